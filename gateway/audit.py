"""Audit rows written by the gateway itself (cohort manifests, re-presigning, logins, token use).

Rows go to the crosswalk's append-only ``audit_log`` table (``0001_crosswalk.sql``), the one audit trail
of TMI; PHI reads and writes made through the crosswalk service are audited by that service.
``detail`` never holds PHI or tokens: filters, counts and identifiers of research objects only.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gateway.deps import Principal

logger = logging.getLogger(__name__)


def record(
    conn: psycopg.Connection,
    principal: Principal,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    request_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit row for ``principal`` doing ``action`` (committed with the caller's transaction)."""
    conn.execute(
        "INSERT INTO audit_log (actor, role, action, target_type, target_id, request_id, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (principal.actor, principal.role, action, target_type, target_id, request_id, Jsonb(detail or {})),
    )
