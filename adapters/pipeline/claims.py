"""Idempotency claims for intake objects (table ``pipeline_objects``, migration 0301).

One conditional upsert claims an object version (bucket + key + version/ETag): it inserts a fresh
IN_PROGRESS row, or takes over a row whose claim expired (a worker died mid-flight) or whose last attempt
FAILED with a retryable error. COMPLETED and QUARANTINED rows are never claimed again, so a duplicate
notification, a re-sent instance with identical bytes, or a replayed SQS message does no work twice.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from enum import StrEnum

from psycopg_pool import ConnectionPool

from functions.events import S3ObjectRef

logger = logging.getLogger(__name__)


class ClaimState(StrEnum):
    """States of ``pipeline_objects.state``."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    QUARANTINED = "QUARANTINED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """Result of :meth:`ClaimStore.claim`: ``claimed`` True means this worker owns the object now;
    otherwise ``state`` tells why not (finished already, or another worker's live claim)."""

    claimed: bool
    state: ClaimState | None
    attempts: int = 0
    message: str | None = None  # the message whose delivery holds the claim


_CLAIM_SQL = """
INSERT INTO pipeline_objects (idempotency_key, bucket, object_key, etag, state, claimed_by, claim_message,
                              expires_at)
VALUES (%(ikey)s, %(bucket)s, %(key)s, %(etag)s, 'IN_PROGRESS', %(worker)s, %(message)s,
        now() + make_interval(secs => %(ttl)s))
ON CONFLICT (idempotency_key) DO UPDATE
   SET state = 'IN_PROGRESS', claimed_by = EXCLUDED.claimed_by, claim_message = EXCLUDED.claim_message,
       expires_at = EXCLUDED.expires_at, attempts = pipeline_objects.attempts + 1, updated_at = now()
 WHERE pipeline_objects.state = 'FAILED'
    OR (pipeline_objects.state = 'IN_PROGRESS' AND pipeline_objects.expires_at < now())
RETURNING attempts
"""


def worker_identity() -> str:
    """A label for the claiming process (host:pid), for operators reading the table."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ClaimStore:
    """Claims, completes and releases intake objects in PostgreSQL (one short transaction each)."""

    def __init__(self, pool: ConnectionPool, claim_ttl_s: int = 300) -> None:
        self._pool = pool
        self._ttl = claim_ttl_s

    def claim(self, obj: S3ObjectRef, message: str | None = None) -> ClaimOutcome:
        """Claim ``obj`` for processing on behalf of ``message`` (see the module docstring)."""
        params = {"ikey": obj.idempotency_key, "bucket": obj.bucket, "key": obj.key, "etag": obj.etag,
                  "worker": worker_identity(), "ttl": self._ttl, "message": message or None}
        with self._pool.connection() as conn:
            row = conn.execute(_CLAIM_SQL, params).fetchone()
            if row is not None:
                return ClaimOutcome(True, ClaimState.IN_PROGRESS, int(str(row[0])))
            existing = conn.execute(
                "SELECT state, attempts, claim_message FROM pipeline_objects WHERE idempotency_key = %s",
                (obj.idempotency_key,),
            ).fetchone()
        if existing is None:  # pragma: no cover - deleted between the two statements
            return ClaimOutcome(False, None)
        return ClaimOutcome(False, ClaimState(str(existing[0])), int(str(existing[1])),
                            str(existing[2]) if existing[2] is not None else None)

    def complete(self, obj: S3ObjectRef, *, pseudonym: str | None, research_key: str | None,
                 study_uid: str | None, series_uid: str | None, sop_uid: str | None) -> None:
        """Mark ``obj`` COMPLETED with where it was published."""
        with self._pool.connection() as conn:
            conn.execute(
                """UPDATE pipeline_objects SET state = 'COMPLETED', pseudonym = %s, research_key = %s,
                          research_study_uid = %s, research_series_uid = %s, research_sop_uid = %s,
                          reason = NULL, expires_at = NULL, completed_at = now(), updated_at = now()
                    WHERE idempotency_key = %s""",
                (pseudonym, research_key, study_uid, series_uid, sop_uid, obj.idempotency_key),
            )

    def quarantine(self, obj: S3ObjectRef, *, reason: str, detail: str, quarantine_bucket: str,
                   quarantine_key: str, calling_aet: str | None, pseudonym: str | None) -> None:
        """Mark ``obj`` QUARANTINED and record where its copy went and why (one transaction)."""
        with self._pool.connection() as conn:
            conn.execute(
                """UPDATE pipeline_objects SET state = 'QUARANTINED', reason = %s, pseudonym = %s,
                          expires_at = NULL, completed_at = now(), updated_at = now()
                    WHERE idempotency_key = %s""",
                (reason, pseudonym, obj.idempotency_key),
            )
            conn.execute(
                """INSERT INTO pipeline_quarantine (idempotency_key, bucket, object_key, quarantine_bucket,
                                                    quarantine_key, reason, detail, calling_aet)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (idempotency_key) DO NOTHING""",
                (obj.idempotency_key, obj.bucket, obj.key, quarantine_bucket, quarantine_key, reason, detail,
                 calling_aet),
            )

    def release(self, obj: S3ObjectRef, error: str) -> None:
        """Mark a claimed object FAILED (retryable) so the next delivery can claim it at once."""
        with self._pool.connection() as conn:
            conn.execute(
                """UPDATE pipeline_objects SET state = 'FAILED', reason = %s, expires_at = NULL,
                          updated_at = now()
                    WHERE idempotency_key = %s AND state = 'IN_PROGRESS'""",
                (error[:200], obj.idempotency_key),
            )

    def finished_among(self, bucket: str, keys: list[str]) -> set[str]:
        """Those of ``keys`` (one listed page) with a COMPLETED or QUARANTINED record (any version)."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                """SELECT DISTINCT object_key FROM pipeline_objects
                    WHERE bucket = %s AND object_key = ANY(%s) AND state IN ('COMPLETED', 'QUARANTINED')""",
                (bucket, keys),
            ).fetchall()
        return {str(r[0]) for r in rows}

    def counts(self) -> dict[str, int]:
        """Number of rows per state (for ``tmi demo`` progress and ``tmi stack status``)."""
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT state, count(*) FROM pipeline_objects GROUP BY state").fetchall()
        return {str(r[0]): int(str(r[1])) for r in rows}
