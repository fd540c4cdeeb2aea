"""API tokens and browser sessions of the gateway, in PostgreSQL.

A token is ``tmi_`` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored; the raw value
is returned once by :func:`create_token` and never logged. Because the token is high-entropy, a plain
SHA-256 is the right hash (no salt or slow KDF is needed, and lookup by hash stays an index probe); the
final comparison uses :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import class_row

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "tmi_"  # noqa: S105 - a public prefix, not a secret
ROLES: tuple[str, ...] = ("researcher", "admin", "service")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What the gateway knows about an authenticated caller (never the token itself)."""

    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


def hash_token(token: str) -> bytes:
    """Return the SHA-256 digest under which ``token`` is stored."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    """Return a fresh random API token (256 bits of entropy)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(conn: psycopg.Connection, *, name: str, role: str) -> tuple[TokenInfo, str]:
    """Create a token with ``role`` and return its record and the raw token (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = new_token()
    with conn.cursor(row_factory=class_row(TokenInfo)) as cur:
        cur.execute(
            "INSERT INTO gateway_api_token (name, role, token_hash) VALUES (%s, %s, %s) "
            "RETURNING id, name, role, created_at, revoked_at, last_used_at",
            (name, role, hash_token(token)),
        )
        info = cur.fetchone()
    assert info is not None
    logger.info("api token created id=%s role=%s", info.id, info.role)
    return info, token


def revoke_token(conn: psycopg.Connection, token_id: int) -> bool:
    """Revoke token ``token_id`` (and end its browser sessions); return False when no live token had it."""
    row = conn.execute(
        "UPDATE gateway_api_token SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING id",
        (token_id,),
    ).fetchone()
    conn.execute("DELETE FROM gateway_web_session WHERE token_id = %s", (token_id,))
    if row:
        logger.info("api token revoked id=%s", token_id)
    return row is not None


def list_tokens(conn: psycopg.Connection) -> list[TokenInfo]:
    """Return every token record (id, name, role, timestamps), oldest first. Never the tokens."""
    with conn.cursor(row_factory=class_row(TokenInfo)) as cur:
        cur.execute(
            "SELECT id, name, role, created_at, revoked_at, last_used_at FROM gateway_api_token ORDER BY id"
        )
        return cur.fetchall()


def authenticate(conn: psycopg.Connection, token: str) -> TokenInfo | None:
    """Return the live token record matching ``token``, or ``None`` (unknown, malformed or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    row = conn.execute(
        "SELECT id, name, role, created_at, revoked_at, last_used_at, token_hash FROM gateway_api_token "
        "WHERE token_hash = %s",
        (digest,),
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[6]), digest) or row[4] is not None:
        return None
    # last_used_at at minute granularity keeps this from writing on every request.
    conn.execute(
        "UPDATE gateway_api_token SET last_used_at = now() WHERE id = %s "
        "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        (row[0],),
    )
    return TokenInfo(
        id=row[0], name=row[1], role=row[2], created_at=row[3], revoked_at=row[4], last_used_at=row[5]
    )


def create_session(conn: psycopg.Connection, token_id: int, ttl: timedelta) -> str:
    """Create a browser session for ``token_id`` lasting ``ttl``; return the random session id (cookie)."""
    session_id = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO gateway_web_session (id_hash, token_id, expires_at) VALUES (%s, %s, now() + %s)",
        (hash_token(session_id), token_id, ttl),
    )
    return session_id


def authenticate_session(conn: psycopg.Connection, session_id: str) -> TokenInfo | None:
    """Return the live token behind browser session ``session_id``, or ``None`` when expired/unknown."""
    if not session_id or len(session_id) > 200:
        return None
    row = conn.execute(
        "SELECT t.id, t.name, t.role, t.created_at, t.revoked_at, t.last_used_at FROM gateway_web_session s "
        "JOIN gateway_api_token t ON t.id = s.token_id "
        "WHERE s.id_hash = %s AND s.expires_at > now() AND t.revoked_at IS NULL",
        (hash_token(session_id),),
    ).fetchone()
    if row is None:
        return None
    return TokenInfo(
        id=row[0], name=row[1], role=row[2], created_at=row[3], revoked_at=row[4], last_used_at=row[5]
    )


def delete_session(conn: psycopg.Connection, session_id: str) -> None:
    """End browser session ``session_id`` (logout); expired sessions are purged at the same time."""
    conn.execute(
        "DELETE FROM gateway_web_session WHERE id_hash = %s OR expires_at < now()", (hash_token(session_id),)
    )
