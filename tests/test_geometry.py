"""The shared size plan: what each op does to the image's dimensions."""

from __future__ import annotations

import pytest

from renderq.errors import ErrorCode, InvalidRequest
from renderq.geometry import Size, plan_resize, plan_sizes, rotated_size
from renderq.operations import Resize, parse_operations
from renderq.settings import Settings

SETTINGS = Settings.from_env({})


@pytest.mark.parametrize(
    ("size", "op", "scaled", "crop"),
    [
        ((400, 200), Resize(100, 100, "contain"), (100, 50), None),
        ((400, 200), Resize(100, None, "contain"), (100, 50), None),
        ((400, 200), Resize(None, 100, "contain"), (200, 100), None),
        ((400, 200), Resize(100, 100, "cover"), (200, 100), (50, 0, 150, 100)),
        ((200, 400), Resize(100, 100, "cover"), (100, 200), (0, 50, 100, 150)),
        ((400, 200), Resize(100, 100, "fill"), (100, 100), None),
        ((40, 20), Resize(100, 100, "inside"), (40, 20), None),
        ((40, 20), Resize(100, 100, "contain"), (100, 50), None),
        ((3, 1000), Resize(10, None, "contain"), (10, 3333), None),
        ((1000, 1), Resize(10, 10, "contain"), (10, 1), None),
    ],
)
def test_plan_resize(
    size: Size, op: Resize, scaled: Size, crop: tuple[int, int, int, int] | None
) -> None:
    plan = plan_resize(size, op)
    assert (plan.scaled, plan.crop) == (scaled, crop)


@pytest.mark.parametrize(
    ("degrees", "expected"),
    [(0, (300, 200)), (90, (200, 300)), (-90, (200, 300)), (180, (300, 200)), (45, (354, 354))],
)
def test_rotated_size(degrees: float, expected: Size) -> None:
    assert rotated_size((300, 200), degrees) == expected


def test_plan_sizes_follows_the_chain() -> None:
    ops = parse_operations(
        [
            {"op": "rotate", "degrees": 90},
            {"op": "crop", "x": 10, "y": 10, "width": 100, "height": 200},
            {"op": "resize", "width": 50, "fit": "contain"},
            {"op": "grayscale"},
        ],
        SETTINGS,
    )
    assert plan_sizes((300, 200), ops, SETTINGS) == [(200, 300), (100, 200), (50, 100), (50, 100)]


def test_crop_is_checked_against_the_size_before_it() -> None:
    ops = parse_operations(
        [
            {"op": "resize", "width": 100, "height": 100, "fit": "fill"},
            {"op": "crop", "x": 50, "y": 50, "width": 60, "height": 10},
        ],
        SETTINGS,
    )
    with pytest.raises(InvalidRequest) as caught:
        plan_sizes((1000, 1000), ops, SETTINGS)
    assert caught.value.code is ErrorCode.OUT_OF_RANGE
    assert caught.value.field == "ops[1].width"
