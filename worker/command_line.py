"""The operators' commands' shared plumbing, which lives in `renderq.command_line` so that the
front's own command (`service.keys`) uses it too."""

from __future__ import annotations

from renderq.command_line import emit_line, run_with_redis

__all__ = ["emit_line", "run_with_redis"]
