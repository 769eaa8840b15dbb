"""Tenants: who a job belongs to.

With `RENDERQ_AUTH=required` a tenant is the name of the API key a request carried; with auth
off every request belongs to one implicit tenant, so both modes run through the same code.
"""

from __future__ import annotations

import re
from typing import Final

DEFAULT_TENANT: Final = "default"
TENANT_NAME_PATTERN: Final = "[a-z0-9][a-z0-9_-]{0,63}"
_TENANT_NAME = re.compile(TENANT_NAME_PATTERN)


def is_tenant_name(text: str) -> bool:
    """Whether `text` may name a tenant (checked before it is used in a Redis key)."""
    return _TENANT_NAME.fullmatch(text) is not None
