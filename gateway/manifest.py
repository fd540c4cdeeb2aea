"""Cohort manifests: every instance of a cohort with its key, size, SHA-256 and a presigned GET URL.

A manifest is streamed: the catalog rows come from a server-side cursor inside one REPEATABLE READ
snapshot (so the announced ``count`` is exactly the number of instances that follow), each row is signed
locally (:mod:`gateway.presign`), and the body is emitted in chunks. Before the first byte is sent, one
audit row records who asked, with which filters, and how many instances and bytes the manifest holds.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from adapters.db import catalog
from gateway import audit
from gateway.deps import Principal
from gateway.presign import Presigner
from gateway.services import Services

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
CSV_COLUMNS = (
    "key",
    "size",
    "sha256",
    "url",
    "pseudonym",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "modality",
    "view_position",
    "laterality",
)
_CHUNK_ROWS = 1000


@dataclass(frozen=True, slots=True)
class ManifestStream:
    """A manifest ready to stream: its id, media type, download file name and body chunks."""

    manifest_id: str
    media_type: str
    filename: str
    count: int
    body: Iterator[bytes]


def _row_dict(row: catalog.ManifestRow, url: str) -> dict[str, object]:
    return {
        "key": row.bucket_key,
        "size": row.size_bytes,
        "sha256": row.sha256,
        "url": url,
        "pseudonym": row.pseudonym,
        "study_instance_uid": row.study_instance_uid,
        "series_instance_uid": row.series_instance_uid,
        "sop_instance_uid": row.sop_instance_uid,
        "modality": row.modality,
        "view_position": row.view_position,
        "laterality": row.laterality,
    }


def open_manifest(
    services: Services,
    audit_conn: psycopg.Connection,
    principal: Principal,
    filters: catalog.StudyFilters,
    *,
    fmt: str,
    api_url: str,
    request_id: str,
) -> ManifestStream:
    """Count the cohort, write the audit row, and return the manifest's body as a lazy chunk iterator.

    The returned iterator holds one pooled connection until it is exhausted or closed.
    """
    if fmt not in ("json", "csv"):
        raise ValueError("format must be json or csv")
    settings = services.settings
    manifest_id = str(uuid.uuid4())
    pool = services.pool
    conn = pool.getconn()
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        counts = catalog.count_cohort(conn, filters)
        presigner = Presigner.from_client(services.s3(), settings.research_bucket, settings.presign_expiry_s)
        audit.record(
            audit_conn,
            principal,
            "research.manifest",
            target_type="cohort_manifest",
            target_id=manifest_id,
            request_id=request_id,
            detail={
                "filters": filters.as_dict(),
                "instances": counts.instances,
                "studies": counts.studies,
                "total_bytes": counts.total_bytes,
                "format": fmt,
                "expires_at": presigner.expires_at.isoformat(),
            },
        )
    except BaseException:
        _release(pool, conn)
        raise
    logger.info("manifest %s: %d instances for %s", manifest_id, counts.instances, principal.actor)
    header = {
        "manifest_version": MANIFEST_VERSION,
        "manifest_id": manifest_id,
        "created_at": datetime.now(UTC).isoformat(),
        "expires_at": presigner.expires_at.isoformat(),
        "api_url": api_url,
        "bucket": settings.research_bucket,
        "filters": filters.as_dict(),
        "count": counts.instances,
        "total_bytes": counts.total_bytes,
    }
    body = _stream(pool, conn, filters, presigner, header, fmt)
    return ManifestStream(
        manifest_id=manifest_id,
        media_type="application/json" if fmt == "json" else "text/csv; charset=utf-8",
        filename=f"cohort-{manifest_id}.{fmt}",
        count=counts.instances,
        body=body,
    )


def _release(pool: object, conn: psycopg.Connection) -> None:
    try:
        if not conn.closed:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        logger.warning("manifest connection could not be rolled back; the pool will discard it")
    pool.putconn(conn)  # type: ignore[attr-defined]


def _stream(
    pool: object,
    conn: psycopg.Connection,
    filters: catalog.StudyFilters,
    presigner: Presigner,
    header: dict[str, object],
    fmt: str,
) -> Iterator[bytes]:
    rows = catalog.iter_cohort_instances(conn, filters)
    try:
        if fmt == "json":
            head = json.dumps(header, separators=(",", ":"))
            yield (head[:-1] + ',"instances":[').encode()
            first = True
            for chunk in iter(lambda: list(itertools.islice(rows, _CHUNK_ROWS)), []):
                parts = [
                    json.dumps(_row_dict(r, presigner.url(r.bucket_key)), separators=(",", ":"))
                    for r in chunk
                ]
                yield (("" if first else ",") + ",".join(parts)).encode()
                first = False
            yield b"]}\n"
        else:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            yield buffer.getvalue().encode()
            for chunk in iter(lambda: list(itertools.islice(rows, _CHUNK_ROWS)), []):
                buffer.seek(0)
                buffer.truncate()
                for r in chunk:
                    writer.writerow(_row_dict(r, presigner.url(r.bucket_key)).values())
                yield buffer.getvalue().encode()
    finally:
        rows.close()  # closes the server-side cursor before the connection goes back to the pool
        _release(pool, conn)


def chained(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    """Yield ``first`` then ``rest`` (used to surface errors before the response starts)."""
    yield first
    yield from rest
