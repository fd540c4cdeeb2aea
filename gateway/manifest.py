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
from typing import Any

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


_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]  # C-accelerated


def _json_str(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _json_row(row: tuple[Any, ...], url: str) -> str:
    """One manifest instance as a JSON object (hand-assembled: ~4x faster than ``json.dumps(dict)``)."""
    key, size, sha256, pseudonym, study, series, sop, modality, view, laterality = row
    return (
        f'{{"key":{_quote(key)},"size":{int(size)},"sha256":{_quote(sha256)},"url":{_quote(url)},'
        f'"pseudonym":{_quote(pseudonym)},"study_instance_uid":{_quote(study)},'
        f'"series_instance_uid":{_quote(series)},"sop_instance_uid":{_quote(sop)},'
        f'"modality":{_json_str(modality)},"view_position":{_json_str(view)},'
        f'"laterality":{_json_str(laterality)}}}'
    )


def _csv_line(row: tuple[Any, ...], url: str) -> str | None:
    """One CSV line, or ``None`` when a value needs quoting (then the csv module writes the row)."""
    key, size, sha256, *rest = row
    values = [key, str(size), sha256, url, *("" if v is None else v for v in rest)]
    line = ",".join(values)
    if line.count(",") != len(values) - 1 or '"' in line or "\n" in line or "\r" in line:
        return None
    return line + "\n"


def _csv_row(row: tuple[Any, ...], url: str) -> tuple[Any, ...]:
    key, size, sha256, *rest = row
    return (key, size, sha256, url, *rest)


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
    rows = catalog.iter_cohort_rows(conn, filters)
    try:
        if fmt == "json":
            head = json.dumps(header, separators=(",", ":"))
            yield (head[:-1] + ',"instances":[').encode()
            first = True
            for chunk in iter(lambda: list(itertools.islice(rows, _CHUNK_ROWS)), []):
                url = presigner.url
                parts = [_json_row(r, url(r[0])) for r in chunk]
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
                url = presigner.url
                for r in chunk:
                    signed = url(r[0])
                    line = _csv_line(r, signed)
                    if line is None:
                        writer.writerow(_csv_row(r, signed))
                    else:
                        buffer.write(line)
                yield buffer.getvalue().encode()
    finally:
        rows.close()  # closes the server-side cursor before the connection goes back to the pool
        _release(pool, conn)


def chained(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    """Yield ``first`` then ``rest`` (used to surface errors before the response starts)."""
    yield first
    yield from rest
