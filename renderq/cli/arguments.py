"""The command line's grammar: commands, options and the examples `--help` shows.

A job's field options (`--font`, `--size`, `--quality`...) are made from the contract's field
declarations (`renderq.text_request.TEXT_FIELDS`, `renderq.image_request.IMAGE_FIELDS`): their
names, types, choices and help are the API's own. Op options (`--resize`, `--rotate`...) are
applied in the order given.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from renderq.client import (
    Adjust,
    Blur,
    Crop,
    Flip,
    Grayscale,
    Resize,
    Rotate,
    Sharpen,
    Watermark,
    rgba,
)
from renderq.client.http import DEFAULT_URL
from renderq.client.rules import OperationLike
from renderq.fields import Choice, Field, Flag, Integer, Number, OptionalChoice, OptionalInteger
from renderq.image_request import IMAGE_FIELDS
from renderq.operations import FITS, FLIP_DIRECTIONS
from renderq.text_request import TEXT_FIELDS

EXAMPLES: Final = """\
examples:
  renderq text "Hello" -o hello.png --size 48 --engine imagemagick
  renderq image photo.jpg --resize 256x256 --fit cover --rotate 90 -o thumb.webp
  renderq image photos/*.jpg --resize 512x512 -o out/ --concurrency 8
  renderq status JOB_ID
  renderq queue --url http://renderq.internal:8000

The API's address comes from --url, else $RENDERQ_URL, else http://localhost:8000.
Exit status: 0 done, 1 a job or request failed, 2 bad usage, 130 interrupted (Ctrl-C).
"""


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The whole grammar; `command` in the parsed arguments names the command to run
    (`dead-letters list` for an action)."""
    parser = _parser("renderq", "Render text and images with a renderq service.", EXAMPLES)
    _connection_options(parser, environ, suppress=False)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name, (summary, epilog, add) in _COMMANDS.items():
        command = sub.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add(command, environ)
        _connection_options(command, environ, suppress=True)
        command.set_defaults(command=name)
    return parser


def field_values(args: argparse.Namespace, fields: Sequence[Field[Any]]) -> dict[str, Any]:
    """The job fields given on the command line (the server's defaults apply to the rest)."""
    given = {field.name: getattr(args, _dest(field), None) for field in fields}
    return {name: value for name, value in given.items() if value is not None}


def operations(args: argparse.Namespace) -> list[OperationLike]:
    """The op options, in the order given, as builders."""
    return [_BUILDERS[kind](value, args) for kind, value in args.ops]


def _parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _connection_options(
    parser: argparse.ArgumentParser, environ: Mapping[str, str], suppress: bool
) -> None:
    """On `renderq` and on each command (`renderq --url U queue` and `renderq queue --url U`
    both work): given after the command, an option wins."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--url",
        default=default(environ.get("RENDERQ_URL", DEFAULT_URL)),
        help=f"the API's address (default: $RENDERQ_URL, else {DEFAULT_URL})",
    )
    group.add_argument(
        "--api-key",
        default=default(environ.get("RENDERQ_API_KEY")),
        help="sent as a bearer token (default: $RENDERQ_API_KEY)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output: one JSON document per line, no progress bar",
    )


def _add_text(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument("text", help="the text to draw")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the image file")
    _field_options(parser, TEXT_FIELDS, skip={"text"})
    _timeout_option(parser)


def _add_image(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE", help="images to process")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="a file for one image (its extension gives the format unless --format does), "
        "else a directory: each result is named after its input, with its format's extension",
    )
    parser.add_argument(
        "--concurrency", type=_positive, default=8, help="jobs in flight at once (default: 8)"
    )
    _op_options(parser)
    _field_options(parser, IMAGE_FIELDS, skip={"ops"})
    _timeout_option(parser)


def _add_job_id(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument("job_id", metavar="JOB_ID", help="the id POST /jobs answered")


def _add_wait(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    _add_job_id(parser, environ)
    parser.add_argument("-o", "--output", type=Path, required=True, help="the image file")
    _timeout_option(parser)


def _add_nothing(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    pass


def _add_dead_letters(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the dead letters (at most 20, oldest first)")
    _connection_options(listing, environ, suppress=True)
    listing.set_defaults(command="dead-letters list")
    requeue = actions.add_parser(
        "requeue",
        help="put dead letters' jobs back on the queue",
        epilog="examples:\n  renderq dead-letters requeue 1764689501234-0\n"
        "  RENDERQ_ADMIN_TOKEN=... renderq dead-letters requeue --all",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    requeue.add_argument("entries", nargs="*", metavar="ENTRY_ID", help="from `list`")
    requeue.add_argument("--all", action="store_true", help="every dead letter")
    requeue.add_argument(
        "--admin-token",
        default=environ.get("RENDERQ_ADMIN_TOKEN"),
        help="the server's RENDERQ_ADMIN_TOKEN (default: $RENDERQ_ADMIN_TOKEN)",
    )
    _connection_options(requeue, environ, suppress=True)
    requeue.set_defaults(command="dead-letters requeue")


def _timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for each job to end (default: 120)",
    )


def _field_options(
    parser: argparse.ArgumentParser, fields: Sequence[Field[Any]], skip: set[str]
) -> None:
    group = parser.add_argument_group("job fields (left out: the server's default)")
    for field in fields:
        if field.name in skip:
            continue
        option = "--" + field.name.replace("_", "-")
        if isinstance(field, Flag):
            group.add_argument(
                option, dest=_dest(field), action="store_true", default=None, help=field.doc
            )
            continue
        choices = sorted(field.choices) if isinstance(field, Choice | OptionalChoice) else None
        group.add_argument(
            option,
            dest=_dest(field),
            type=_option_type(field),
            choices=choices,
            metavar=field.name.upper(),
            help=field.doc + _choices_shown(choices) + _default_shown(field),
        )


def _dest(field: Field[Any]) -> str:
    return f"field_{field.name}"


def _option_type(field: Field[Any]) -> Callable[[str], Any]:
    if isinstance(field, Integer | OptionalInteger):
        return int
    if isinstance(field, Number):
        return float
    return str


def _choices_shown(choices: list[str] | None) -> str:
    return f"; one of {', '.join(choices)}" if choices else ""


def _default_shown(field: Field[Any]) -> str:
    default = field.default
    if field.required or default is None or callable(default):
        return ""
    return f" (default: {field.shown(default)})".replace("%", "%%")


class _Op(argparse.Action):
    """Appends (op, value) to `ops`: the ops apply in the order of the options."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        namespace.ops = [*getattr(namespace, "ops", []), (self.const, values)]


def _op_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("operations (applied in the order given)")
    parser.set_defaults(ops=[])

    def op(name: str, help: str, **options: Any) -> None:
        group.add_argument(f"--{name}", action=_Op, const=name, dest="ops", help=help, **options)

    op("resize", "scale to a box: WxH, W or xH (see --fit)", type=_box, metavar="WxH")
    op("crop", "cut the box at X,Y of WxH", type=_crop, metavar="X,Y,W,H")
    op("rotate", "turn clockwise (see --rotate-background)", type=float, metavar="DEGREES")
    op("flip", "mirror", choices=FLIP_DIRECTIONS)
    op("grayscale", "Rec. 601 luma", nargs=0)
    op("blur", "Gaussian blur of this radius in px", type=float, metavar="RADIUS")
    op("sharpen", "unsharp mask of this radius in px", type=float, metavar="RADIUS")
    op("brightness", "-100 to 100 (%%)", type=float, metavar="PERCENT")
    op("contrast", "-100 to 100 (%%)", type=float, metavar="PERCENT")
    op("watermark", "text in the bottom right corner", metavar="TEXT")
    op(
        "op",
        'any op as the API\'s JSON, e.g. \'{"op": "blur", "radius": 2}\'',
        type=_json_op,
        metavar="JSON",
    )
    group.add_argument(
        "--fit", choices=FITS, default="contain", help="of every --resize (default: contain)"
    )
    group.add_argument(
        "--rotate-background",
        metavar="COLOR",
        help="fills the canvas a --rotate grows (default: transparent)",
    )


_BUILDERS: Final[dict[str, Callable[[Any, argparse.Namespace], OperationLike]]] = {
    "resize": lambda box, args: Resize(box[0], box[1], fit=args.fit),
    "crop": lambda box, args: Crop(*box),
    "rotate": lambda degrees, args: (
        Rotate(degrees, rgba(args.rotate_background)) if args.rotate_background else Rotate(degrees)
    ),
    "flip": lambda direction, args: Flip(direction),
    "grayscale": lambda _, args: Grayscale(),
    "blur": lambda radius, args: Blur(radius),
    "sharpen": lambda radius, args: Sharpen(radius),
    "brightness": lambda value, args: Adjust(brightness=value),
    "contrast": lambda value, args: Adjust(contrast=value),
    "watermark": lambda text, args: Watermark(text),
    "op": lambda data, args: data,
}


def _box(text: str) -> tuple[int | None, int | None]:
    width, _, height = text.lower().partition("x")
    try:
        box = (int(width) if width else None, int(height) if height else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH, W or xH") from None
    if box == (None, None):
        raise argparse.ArgumentTypeError("give a width, a height or both")
    return box


def _crop(text: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in text.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) != 4:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y,W,H")
    return numbers


def _json_op(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("an op is a JSON object")
    return data


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


_COMMANDS: Final = {
    "text": (
        "render a text to an image file",
        'examples:\n  renderq text "Hello" -o hello.png\n'
        '  renderq text "Line one\\nline two" --font dejavu-serif --size 64 '
        "--color '#336699' --background transparent -o hello.webp",
        _add_text,
    ),
    "image": (
        "process images: one to a file, or many to a directory with a progress bar",
        "examples:\n"
        "  renderq image photo.jpg --resize 256x256 --fit cover --rotate 90 -o thumb.webp\n"
        "  renderq image photos/*.jpg --resize 512x512 -o out/ --concurrency 8\n"
        '  renderq image scan.png --op \'{"op": "watermark", "text": "draft", "gravity": '
        '"center"}\' -o marked.png\n\n'
        "Each result is written as it arrives; a summary ends the run, and the exit status is 1\n"
        "if any image failed. Ctrl-C stops and lists the jobs still queued.",
        _add_image,
    ),
    "status": (
        "show a job's status",
        "examples:\n  renderq status JOB_ID\n  renderq status JOB_ID --json | jq .status",
        _add_job_id,
    ),
    "wait": (
        "wait for a job and save its image",
        "examples:\n  renderq wait JOB_ID -o result.png --timeout 300",
        _add_wait,
    ),
    "cancel": (
        "cancel a queued job",
        "examples:\n  renderq cancel JOB_ID",
        _add_job_id,
    ),
    "queue": (
        "the queue's depth, rates and workers",
        "examples:\n  renderq queue\n  renderq queue --json | jq .queue.depth",
        _add_nothing,
    ),
    "dead-letters": (
        "list or requeue the jobs that failed for good (needs the admin token to requeue)",
        "examples:\n  renderq dead-letters list\n"
        "  renderq dead-letters requeue ENTRY_ID --admin-token TOKEN\n"
        "  renderq dead-letters requeue --all",
        _add_dead_letters,
    ),
}
