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


def scoped_idempotency_key(tenant: str, client_key: str) -> str:
    """The name an Idempotency-Key is stored under: the client's key within its tenant, so
    one tenant can neither claim nor find another's. The implicit tenant keeps the bare key
    (what renderq stored before tenants), and a client's key has no newline (printable ASCII
    only, see `service.headers`), so no scoped name equals a bare one."""
    return client_key if tenant == DEFAULT_TENANT else f"{tenant}\n{client_key}"
