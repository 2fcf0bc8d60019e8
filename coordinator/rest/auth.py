"""The REST API's token: where it comes from and how a request shows it.

Mutating endpoints (``POST /jobs``, cancel, savepoints, stop) require
``Authorization: Bearer <token>`` when a token is configured; reads never do.
The token comes from ``--rest-token-file`` (the file's content, stripped) or
else ``JM_REST_TOKEN`` (the token itself) (coordinator/commands/replica.py). It
is compared in constant time and never logged nor shown by ``/jobmanager/config``.
"""

from __future__ import annotations

import hmac
from typing import Final

SCHEME: Final = "Bearer"


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header value carries `token` (always, with none)."""
    if token is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != SCHEME.lower():
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
