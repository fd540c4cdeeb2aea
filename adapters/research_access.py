"""Read-only enforcement for researcher accounts on the research Orthanc (plain module, no ``orthanc``).

Orthanc 1.10 authenticates users (``RegisteredUsers``) but has no per-user permissions. The research
Orthanc's Python plugin registers an incoming-HTTP-request filter that calls :func:`allowed`: the pipeline
account may do anything; every other (researcher) account may only read — GET/HEAD everywhere, plus the
read-only POST routes Orthanc Explorer and QIDO tooling use (``/tools/find``, ``/tools/lookup``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

READ_ONLY_POST_ROUTES = ("/tools/find", "/tools/lookup")


def basic_auth_user(headers: Mapping[str, str]) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header, or None."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    if not value.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(value[6:].strip()).decode("utf-8", "replace")
    except ValueError:
        return None
    return decoded.split(":", 1)[0]


def allowed(method: str, uri: str, headers: Mapping[str, str], writers: Iterable[str]) -> bool:
    """True when the request may proceed (Orthanc itself still checks the password)."""
    user = basic_auth_user(headers)
    if user is not None and user in set(writers):
        return True
    method = method.upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return True
    return method == "POST" and uri.rstrip("/") in READ_ONLY_POST_ROUTES
