"""One frozen settings object, read from an environment mapping once.

Both the front and the worker build it with `Settings.from_env()` and pass it down;
nothing reads `os.environ` anywhere else, so tests build their own with `from_env({...})`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting in the environment cannot be parsed; the message names the variable."""


AUTH_MODES = ("off", "required")


def _setting(env: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    # Where things run.
    redis_url: str = _setting("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis connection URL")
    host: str = _setting("HOST", "127.0.0.1", "address the HTTP front binds")
    port: int = _setting("PORT", 8000, "port the HTTP front binds")
    redis_sentinels: str = _setting(
        "REDIS_SENTINELS",
        "",
        "Sentinels as host:port,host:port (empty: REDIS_URL names the one Redis); with them,"
        " REDIS_URL gives only the scheme, user, password and database",
    )
    redis_sentinel_master: str = _setting(
        "REDIS_SENTINEL_MASTER", "renderq", "the name the Sentinels monitor the primary under"
    )
    redis_sentinel_password_file: str = _setting(
        "RENDERQ_REDIS_SENTINEL_PASSWORD_FILE",
        "",
        "file holding the Sentinels' own password (empty: none)",
    )
    redis_tls_ca_file: str = _setting(
        "RENDERQ_REDIS_TLS_CA_FILE",
        "",
        "CA bundle that signs Redis's certificate, for rediss:// URLs (empty: the system's)",
    )
    redis_timeout: float = _setting(
        "RENDERQ_REDIS_TIMEOUT",
        0.9,
        "seconds one try of a Redis call may take (connect, or wait for the reply)",
    )
    redis_retries: int = _setting(
        "RENDERQ_REDIS_RETRIES", 1, "retries of a Redis call that failed or timed out"
    )
    redis_deadline: float = _setting(
        "RENDERQ_REDIS_DEADLINE",
        1.8,
        "seconds the front gives one Redis operation, retries included, before it answers 503",
    )
    breaker_failures: int = _setting(
        "RENDERQ_BREAKER_FAILURES",
        3,
        "Redis failures in a row after which the front answers 503 at once and probes Redis",
    )
    breaker_probe_interval: float = _setting(
        "RENDERQ_BREAKER_PROBE_INTERVAL",
        0.5,
        "seconds between the front's probes of an unreachable Redis",
    )
    replica_ack_timeout_ms: int = _setting(
        "RENDERQ_REPLICA_ACK_TIMEOUT_MS",
        500,
        "how long a write waits (WAIT) for a replica to confirm it, when the primary has one",
    )
    redis_password_file: str = _setting(
        "RENDERQ_REDIS_PASSWORD_FILE",
        "",
        "file holding the Redis password, used when REDIS_URL carries none (empty: no password)",
    )
    key_prefix: str = _setting("RENDERQ_KEY_PREFIX", "renderq", "prefix of every Redis key")
    font_dir: str = _setting(
        "RENDERQ_FONT_DIR",
        "/usr/share/fonts",
        "directory holding the allowlisted fonts (`truetype/dejavu/...`, `truetype/noto/...`, "
        "`opentype/noto/...`)",
    )
    log_level: str = _setting("RENDERQ_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR")

    # Lifetimes.
    result_ttl: int = _setting(
        "RENDERQ_RESULT_TTL", 3600, "seconds a job, its status and its image stay in Redis"
    )
    retry_after: int = _setting(
        "RENDERQ_RETRY_AFTER",
        1,
        "shortest Retry-After sent while a job is not ready (a queued job's time left raises it)",
    )
    max_wait: int = _setting("RENDERQ_MAX_WAIT", 30, "longest long-poll `?wait=` in seconds")
    max_queued: int = _setting(
        "RENDERQ_MAX_QUEUED", 10000, "jobs waiting or running beyond which POST /jobs answers 503"
    )

    max_retry_after: int = _setting(
        "RENDERQ_MAX_RETRY_AFTER",
        30,
        "longest Retry-After a queued job's time left may give",
    )
    rate_window: int = _setting(
        "RENDERQ_RATE_WINDOW",
        60,
        "seconds of recent completions the time left of a queued job is computed from",
    )

    # Watching it work.
    metrics_token: str = _setting(
        "RENDERQ_METRICS_TOKEN",
        "",
        "bearer token /metrics asks for (empty: /metrics is open, as for local use)",
    )
    admin_token: str = _setting(
        "RENDERQ_ADMIN_TOKEN",
        "",
        "bearer token the dashboard's actions (requeue) ask for (empty: the dashboard is"
        " read-only)",
    )
    # Tenants (see README, "Tenants and keys").
    auth: str = _setting(
        "RENDERQ_AUTH",
        "off",
        "`required`: every request but /healthz, /openapi.json and signed result links needs"
        " an API key (`python -m service.keys`); `off`: one implicit tenant, as for local use",
    )
    signing_key: str = _setting(
        "RENDERQ_SIGNING_KEY",
        "",
        "secrets that sign result links, comma-separated: the first signs, every one is"
        " accepted (rotation); empty: RENDERQ_SIGNING_KEY_FILE's, else no result links",
    )
    signing_key_file: str = _setting(
        "RENDERQ_SIGNING_KEY_FILE",
        "",
        "file holding the signing secrets as RENDERQ_SIGNING_KEY does (set-up writes"
        " /etc/renderq/signing-key for `make run`)",
    )
    result_link_ttl: int = _setting(
        "RENDERQ_RESULT_LINK_TTL",
        3600,
        "seconds a result link lasts unless the status request asks for less (`?link_ttl=`);"
        " never beyond the result's own expiry",
    )
    events_max: int = _setting(
        "RENDERQ_EVENTS_MAX",
        10000,
        "job events kept in the events stream, the oldest trimmed (0: no events are written)",
    )
    tap_max: int = _setting(
        "RENDERQ_TAP_MAX", 1000, "jobs a tap's copy of the stream holds before the oldest go"
    )
    tap_input_ttl: int = _setting(
        "RENDERQ_TAP_INPUT_TTL",
        300,
        "seconds an upload is kept after its job ended while a tap is registered, for the tap",
    )

    # Limits on a text request.
    max_body_bytes: int = _setting(
        "RENDERQ_MAX_BODY_BYTES", 65536, "largest JSON request body in bytes"
    )
    max_text_length: int = _setting("RENDERQ_MAX_TEXT_LENGTH", 2000, "most characters in `text`")
    max_text_lines: int = _setting(
        "RENDERQ_MAX_TEXT_LINES", 100, "most lines a text may have after wrapping"
    )
    min_font_size: int = _setting("RENDERQ_MIN_FONT_SIZE", 6, "smallest `size` in px")
    max_font_size: int = _setting("RENDERQ_MAX_FONT_SIZE", 256, "largest `size` in px")
    max_width: int = _setting("RENDERQ_MAX_WIDTH", 4096, "widest image in px")
    max_height: int = _setting("RENDERQ_MAX_HEIGHT", 4096, "tallest image in px")
    max_pixels: int = _setting(
        "RENDERQ_MAX_PIXELS", 8_388_608, "most pixels (width x height) of a rendered text image"
    )

    # Limits on an image request.
    max_upload_bytes: int = _setting(
        "RENDERQ_MAX_UPLOAD_BYTES", 20 * 1024 * 1024, "largest uploaded image in bytes"
    )
    max_input_pixels: int = _setting(
        "RENDERQ_MAX_INPUT_PIXELS", 50_000_000, "most pixels of an uploaded image (header)"
    )
    max_input_width: int = _setting(
        "RENDERQ_MAX_INPUT_WIDTH", 16384, "widest uploaded image in px (header)"
    )
    max_input_height: int = _setting(
        "RENDERQ_MAX_INPUT_HEIGHT", 16384, "tallest uploaded image in px (header)"
    )
    max_operations: int = _setting("RENDERQ_MAX_OPERATIONS", 20, "most operations in `ops`")
    max_watermark_length: int = _setting(
        "RENDERQ_MAX_WATERMARK_LENGTH", 200, "most characters in a watermark's text"
    )
    default_quality: int = _setting(
        "RENDERQ_DEFAULT_QUALITY", 85, "JPEG and WebP quality when a request gives none"
    )

    # Worker behaviour.
    worker_block_ms: int = _setting(
        "RENDERQ_WORKER_BLOCK_MS",
        1000,
        "how long an idle worker blocks on the stream per read (it looks for orphans between)",
    )
    worker_name: str = _setting(
        "RENDERQ_WORKER_NAME",
        "",
        "the worker's consumer name, unique in the deployment and kept across restarts, so a"
        " restarted worker takes its own jobs back at once (empty: host name and pid)",
    )
    worker_lease_ttl: float = _setting(
        "RENDERQ_WORKER_LEASE_TTL",
        3.0,
        "seconds a worker's lease outlives its last renewal; a job of a worker whose lease"
        " expired is taken over by another",
    )
    worker_max_jobs: int = _setting(
        "RENDERQ_WORKER_MAX_JOBS", 10000, "jobs a worker takes before it exits to be restarted"
    )
    worker_max_seconds: int = _setting(
        "RENDERQ_WORKER_MAX_SECONDS", 3600, "seconds a worker runs before it exits to be restarted"
    )
    max_attempts: int = _setting(
        "RENDERQ_MAX_ATTEMPTS",
        3,
        "deliveries of a job (a worker died or was killed with it) before it fails for good",
    )
    worker_user: str = _setting(
        "RENDERQ_WORKER_USER", "renderq", "user a worker started as root drops to"
    )

    # The sandbox each render runs in.
    render_timeout: int = _setting(
        "RENDERQ_RENDER_TIMEOUT", 30, "wall-clock seconds one render may take (and CPU seconds)"
    )
    render_memory_mb: int = _setting(
        "RENDERQ_RENDER_MEMORY_MB", 1024, "address space of a sandbox child in MiB"
    )
    render_file_mb: int = _setting(
        "RENDERQ_RENDER_FILE_MB", 256, "largest file a sandbox child may write, in MiB"
    )
    render_max_files: int = _setting(
        "RENDERQ_RENDER_MAX_FILES", 64, "open files a sandbox child may hold"
    )
    max_result_bytes: int = _setting(
        "RENDERQ_MAX_RESULT_BYTES", 64 * 1024 * 1024, "largest encoded image a render may return"
    )
    sandbox_max_jobs: int = _setting(
        "RENDERQ_SANDBOX_MAX_JOBS",
        500,
        "text jobs the text child renders before it is replaced (an image child renders one)",
    )
    render_user: str = _setting(
        "RENDERQ_RENDER_USER",
        "renderq-render",
        "user the sandbox runs as: owns no file, shared with no other renderq process",
    )
    install_dir: str = _setting(
        "RENDERQ_INSTALL_DIR",
        "/opt/renderq",
        "where set-up installs renderq read-only; the sandbox runs its venv's Python",
    )
    bwrap_path: str = _setting(
        "RENDERQ_BWRAP", "/usr/bin/bwrap", "the bubblewrap binary that builds the sandbox"
    )
    sandbox_allow_weak: bool = _setting(
        "RENDERQ_SANDBOX_ALLOW_WEAK",
        False,
        "run even when a sandbox layer cannot be set up (logged at every start, on /healthz)",
    )
    sandbox_test_hook: bool = _setting(
        "RENDERQ_SANDBOX_TEST_HOOK",
        False,
        "tests only: lets a test run code in a sandbox child; the real entry points refuse it",
    )

    def __post_init__(self) -> None:
        if self.auth not in AUTH_MODES:
            modes = " or ".join(AUTH_MODES)
            raise SettingsError(f"RENDERQ_AUTH={self.auth!r} must be {modes}")

    @property
    def auth_required(self) -> bool:
        return self.auth == "required"

    @property
    def installed_python(self) -> str:
        """The interpreter of renderq's read-only install: what the services and the sandbox
        run, wherever the checkout is."""
        return f"{self.install_dir}/venv/bin/python"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default `os.environ`); unknown keys are ignored."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            if name in source:
                values[f.name] = _parse(name, source[name], type(f.default))
        return cls(**values)

    @classmethod
    def documented(cls) -> list[tuple[str, Any, str]]:
        """(variable, default, meaning) for every setting: the README table is made from this."""
        return [(f.metadata["env"], f.default, f.metadata["doc"]) for f in dataclasses.fields(cls)]


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLEANS.update({"0": False, "false": False, "no": False, "off": False, "": False})


def _parse(name: str, raw: str, kind: Callable[[str], T]) -> T | bool:
    if kind is bool:
        flag = _BOOLEANS.get(raw.strip().lower())
        if flag is None:
            raise SettingsError(f"{name}={raw!r} is not a valid flag (use 1 or 0)")
        return flag
    try:
        value = kind(raw.strip())
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from exc
    if isinstance(value, int | float) and value < 0:
        raise SettingsError(f"{name}={raw!r} must not be negative")
    return value
