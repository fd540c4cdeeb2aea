"""The research catalog: research-safe attributes of every published instance, and the cohort queries.

The pipeline calls :func:`upsert_instance` after each publish (and :func:`delete_instance` when a
republish removes one); the gateway lists studies with :func:`search_studies` (filters, sorting, keyset
pagination) and streams cohort manifests with :func:`iter_cohort_instances`.

Two tables (migration ``0202_research_catalog.sql``): ``research_instance`` (one row per instance) and
``research_study`` (one row per study, aggregated from its instances inside the same transaction that
changes them, so the study list filters with index lookups instead of grouping a million rows).

Filter semantics: an instance matches when every given filter matches it (values of one filter are
alternatives); a study is listed when it has attributes matching every filter — per-instance attributes
(modality, body part, view, laterality, manufacturer, model) are compared as sets, so a study with an R-MLO
and an L-CC image is listed for ``laterality=L&view_position=MLO`` while its manifest holds only instances
that match both. Nothing here ever holds PHI.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from adapters.db.pipelining import can_pipeline_transaction, one_transaction

logger = logging.getLogger(__name__)

SortKey = Literal["study_date", "-study_date", "age_years", "-age_years", "pseudonym", "-pseudonym"]
SORT_KEYS: tuple[str, ...] = (
    "study_date",
    "-study_date",
    "age_years",
    "-age_years",
    "pseudonym",
    "-pseudonym",
)
_SORT_EXPR = {
    "study_date": "coalesce(study_date, DATE '0001-01-01')",
    "age_years": "coalesce(age_years, -1)",
    "pseudonym": "pseudonym",
}
_INSTANCE_SET_FILTERS = {  # filter field -> (instance column, study array column)
    "modality": ("modality", "modalities"),
    "body_part": ("body_part", "body_parts"),
    "view_position": ("view_position", "view_positions"),
    "laterality": ("laterality", "lateralities"),
    "manufacturer": ("manufacturer", "manufacturers"),
    "model": ("model", "models"),
}
_SCALAR_FILTERS = ("pseudonym", "sex", "ethnic_group")


class CatalogError(ValueError):
    """A catalog request is malformed (bad cursor, bad sort key, bad entry)."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One published research instance: research UIDs, storage facts and research-safe attributes only."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    pseudonym: str
    bucket_key: str
    size_bytes: int
    sha256: str
    sex: str | None = None
    age_years: int | None = None
    ethnic_group: str | None = None
    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    laterality: str | None = None
    study_date: date | None = None
    manufacturer: str | None = None
    model: str | None = None
    sop_class_uid: str | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None
    transfer_syntax: str | None = None

    @classmethod
    def from_catalog(
        cls,
        catalog: Mapping[str, Any],
        *,
        study_instance_uid: str,
        series_instance_uid: str,
        sop_instance_uid: str,
        bucket_key: str,
        size_bytes: int,
        sha256: str,
    ) -> CatalogEntry:
        """Build an entry from the de-identifier's ``DeidResult.catalog`` mapping plus storage facts.

        Unknown keys in ``catalog`` are ignored; ``study_date`` may be a ``date`` or DICOM ``YYYYMMDD``.
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in catalog.items() if k in known}
        values["study_date"] = parse_study_date(values.get("study_date"))
        for key in ("age_years", "rows", "columns", "number_of_frames"):
            try:
                values[key] = None if values.get(key) in ("", None) else int(values[key])
            except (TypeError, ValueError):
                values[key] = None  # a malformed optional attribute never blocks publishing
        for key, value in list(values.items()):
            if value == "":
                values[key] = None
        values.update(
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            sop_instance_uid=sop_instance_uid,
            bucket_key=bucket_key,
            size_bytes=int(size_bytes),
            sha256=sha256.lower(),
        )
        return cls(**values)


def parse_study_date(value: object) -> date | None:
    """Return ``value`` (``date``, ``YYYYMMDD``, ``YYYY-MM-DD``) as a ``date``; ``None`` if empty/invalid."""
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    text = str(value).strip().replace("-", "")
    try:
        return date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class StudyFilters:
    """Cohort filters. List filters are alternatives (any-of); every given filter must match."""

    pseudonym: Sequence[str] = ()
    sex: Sequence[str] = ()
    ethnic_group: Sequence[str] = ()
    modality: Sequence[str] = ()
    body_part: Sequence[str] = ()
    view_position: Sequence[str] = ()
    laterality: Sequence[str] = ()
    manufacturer: Sequence[str] = ()
    model: Sequence[str] = ()
    age_min: int | None = None
    age_max: int | None = None
    study_date_from: date | None = None
    study_date_to: date | None = None
    study_instance_uids: Sequence[str] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """Return the non-empty filters as JSON-ready values (for the audit row and the manifest header)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value in (None, (), []):
                continue
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, tuple | list):
                value = list(value)
            out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class StudySummary:
    """A study as researchers see it in the study list."""

    study_instance_uid: str
    pseudonym: str
    sex: str | None
    age_years: int | None
    ethnic_group: str | None
    study_date: date | None
    modalities: list[str]
    body_parts: list[str]
    view_positions: list[str]
    lateralities: list[str]
    manufacturers: list[str]
    models: list[str]
    series_count: int
    instance_count: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class StudyPage:
    """One page of the study list and the cursor of the next page (``None`` on the last page)."""

    items: list[StudySummary]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """One instance of a cohort manifest (before its presigned URL is added)."""

    bucket_key: str
    size_bytes: int
    sha256: str
    pseudonym: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    modality: str | None
    view_position: str | None
    laterality: str | None


@dataclass(frozen=True, slots=True)
class CohortCounts:
    """Size of a cohort: studies, instances and bytes."""

    studies: int
    instances: int
    total_bytes: int


_INSTANCE_COLUMNS = tuple(f.name for f in fields(CatalogEntry))


_INSTANCE_UPSERT = sql.SQL(
    "INSERT INTO research_instance ({cols}, published_at) VALUES ({vals}, now()) "
    "ON CONFLICT (sop_instance_uid) DO UPDATE SET {updates}"
).format(
    cols=sql.SQL(", ").join(map(sql.Identifier, _INSTANCE_COLUMNS)),
    vals=sql.SQL(", ").join(sql.Placeholder() * len(_INSTANCE_COLUMNS)),
    updates=sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
        for c in (*_INSTANCE_COLUMNS, "published_at")
        if c != "sop_instance_uid"
    ),
)


_PREVIOUS_STUDY = "SELECT study_instance_uid FROM research_instance WHERE sop_instance_uid = %s"
_STUDY_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 7695725))"


def upsert_instance(conn: psycopg.Connection, entry: CatalogEntry) -> None:
    """Insert or replace ``entry`` in the catalog and refresh its study row (idempotent).

    Takes a per-study advisory lock, so concurrent publishes of one study never lose an instance in the
    study aggregate. On an autocommit connection outside a transaction (the pipeline's pool) this is two
    round trips: read the instance's current study, then locks + insert + study refresh as one
    transaction (:func:`~adapters.db.pipelining.one_transaction`). Otherwise it runs in a transaction (a
    savepoint when the caller already has one).
    """
    if not entry.bucket_key or len(entry.sha256) != 64:
        raise CatalogError("catalog entry needs a bucket key and a hex SHA-256")
    if can_pipeline_transaction(conn):
        previous = conn.execute(_PREVIOUS_STUDY, (entry.sop_instance_uid,)).fetchone()
        with one_transaction(conn):
            _upsert_statements(conn, entry, previous[0] if previous else None)
        return
    with conn.transaction():
        previous = conn.execute(_PREVIOUS_STUDY, (entry.sop_instance_uid,)).fetchone()
        _upsert_statements(conn, entry, previous[0] if previous else None)


def _upsert_statements(conn: psycopg.Connection, entry: CatalogEntry, previous: str | None) -> None:
    studies = sorted({entry.study_instance_uid, *([previous] if previous else [])})
    for study in studies:  # sorted: two movers never deadlock
        conn.execute(_STUDY_LOCK, (study,))
    conn.execute(_INSTANCE_UPSERT, tuple(getattr(entry, c) for c in _INSTANCE_COLUMNS))
    for study in studies:
        _refresh_study(conn, study)


def delete_instance(conn: psycopg.Connection, sop_instance_uid: str) -> bool:
    """Remove one instance from the catalog (republish replaced it); return False when it was absent."""
    with conn.transaction():
        row = conn.execute(
            "SELECT study_instance_uid FROM research_instance WHERE sop_instance_uid = %s",
            (sop_instance_uid,),
        ).fetchone()
        if row is None:
            return False
        conn.execute(_STUDY_LOCK, (row[0],))
        conn.execute("DELETE FROM research_instance WHERE sop_instance_uid = %s", (sop_instance_uid,))
        _refresh_study(conn, row[0])
    return True


_STUDY_AGGREGATE = """
    SELECT study_instance_uid, min(pseudonym), min(sex), min(age_years), min(ethnic_group), min(study_date),
           coalesce(array_agg(DISTINCT modality) FILTER (WHERE modality IS NOT NULL), '{{}}'),
           coalesce(array_agg(DISTINCT body_part) FILTER (WHERE body_part IS NOT NULL), '{{}}'),
           coalesce(array_agg(DISTINCT view_position) FILTER (WHERE view_position IS NOT NULL), '{{}}'),
           coalesce(array_agg(DISTINCT laterality) FILTER (WHERE laterality IS NOT NULL), '{{}}'),
           coalesce(array_agg(DISTINCT manufacturer) FILTER (WHERE manufacturer IS NOT NULL), '{{}}'),
           coalesce(array_agg(DISTINCT model) FILTER (WHERE model IS NOT NULL), '{{}}'),
           count(DISTINCT series_instance_uid), count(*), sum(size_bytes), now()
    FROM research_instance {where} GROUP BY study_instance_uid
"""
_STUDY_COLUMNS = (
    "study_instance_uid, pseudonym, sex, age_years, ethnic_group, study_date, modalities, body_parts, "
    "view_positions, lateralities, manufacturers, models, series_count, instance_count, total_bytes, "
    "updated_at"
)
_STUDY_UPSERT = (
    f"INSERT INTO research_study ({_STUDY_COLUMNS}) {_STUDY_AGGREGATE} "
    "ON CONFLICT (study_instance_uid) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = EXCLUDED.{c.strip()}" for c in _STUDY_COLUMNS.split(",")[1:])
)


def _refresh_study(conn: psycopg.Connection, study_uid: str) -> None:
    conn.execute(
        _STUDY_UPSERT.format(where="WHERE study_instance_uid = %s"),
        (study_uid,),  # type: ignore[arg-type]
    )
    conn.execute(
        "DELETE FROM research_study s WHERE s.study_instance_uid = %s AND NOT EXISTS "
        "(SELECT 1 FROM research_instance i WHERE i.study_instance_uid = s.study_instance_uid)",
        (study_uid,),
    )


def rebuild_studies(conn: psycopg.Connection) -> int:
    """Recompute every study row from ``research_instance`` (after a bulk COPY load); return the count."""
    with conn.transaction():
        conn.execute("LOCK TABLE research_study IN EXCLUSIVE MODE")
        conn.execute("DELETE FROM research_study")
        cur = conn.execute(_STUDY_UPSERT.format(where=""))  # type: ignore[arg-type]
        return cur.rowcount


_STUDY_DATE_KEY = sql.SQL("study_date IS NOT NULL AND coalesce(study_date, DATE '0001-01-01')")


def _conditions(filters: StudyFilters, *, level: Literal["study", "instance"]) -> list[sql.Composable]:
    conds: list[sql.Composable] = []
    for name in _SCALAR_FILTERS:
        values = list(getattr(filters, name))
        if values:
            conds.append(sql.SQL("{} = ANY({})").format(sql.Identifier(name), sql.Literal(values)))
    for name, (column, array_column) in _INSTANCE_SET_FILTERS.items():
        values = list(getattr(filters, name))
        if not values:
            continue
        if level == "study":
            conds.append(
                sql.SQL("{} && {}::text[]").format(sql.Identifier(array_column), sql.Literal(values))
            )
        else:
            conds.append(sql.SQL("{} = ANY({})").format(sql.Identifier(column), sql.Literal(values)))
    # Range filters are written on the sort expressions (the index keys of research_study), so a range
    # and its sort order share one index scan; "IS NOT NULL" keeps the meaning of the plain column.
    if filters.age_min is not None:
        conds.append(
            sql.SQL("age_years IS NOT NULL AND coalesce(age_years, -1) >= {}").format(
                sql.Literal(filters.age_min)
            )
        )
    if filters.age_max is not None:
        conds.append(
            sql.SQL("age_years IS NOT NULL AND coalesce(age_years, -1) <= {}").format(
                sql.Literal(filters.age_max)
            )
        )
    if filters.study_date_from is not None:
        conds.append(sql.SQL("{} >= {}").format(_STUDY_DATE_KEY, sql.Literal(filters.study_date_from)))
    if filters.study_date_to is not None:
        conds.append(sql.SQL("{} <= {}").format(_STUDY_DATE_KEY, sql.Literal(filters.study_date_to)))
    if filters.study_instance_uids:
        conds.append(
            sql.SQL("study_instance_uid = ANY({})").format(sql.Literal(list(filters.study_instance_uids)))
        )
    return conds


def _where(conds: list[sql.Composable]) -> sql.Composable:
    if not conds:
        return sql.SQL("")
    return sql.SQL("WHERE ") + sql.SQL(" AND ").join(conds)


def encode_cursor(sort: str, value: object, study_uid: str) -> str:
    """Encode a keyset position (sort key, sort value, study UID) as an opaque URL-safe cursor."""
    if isinstance(value, date):
        value = value.isoformat()
    raw = json.dumps([sort, value, study_uid], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[object, str]:
    """Decode ``cursor`` made for ``sort``; raise :class:`CatalogError` when it is malformed or foreign."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, value, study_uid = json.loads(raw)
    except (ValueError, binascii.Error, TypeError) as exc:
        raise CatalogError("malformed cursor") from exc
    if cursor_sort != sort or not isinstance(study_uid, str):
        raise CatalogError("cursor does not belong to this sort order")
    base = sort.lstrip("-")
    if base == "study_date":
        if not isinstance(value, str):
            raise CatalogError("malformed cursor")
        parsed = parse_study_date(value)
        if parsed is None:
            raise CatalogError("malformed cursor")
        return parsed, study_uid
    if base == "age_years" and not isinstance(value, int):
        raise CatalogError("malformed cursor")
    if base == "pseudonym" and not isinstance(value, str):
        raise CatalogError("malformed cursor")
    return value, study_uid


def _sort_value(study: StudySummary, base: str) -> object:
    if base == "study_date":
        return study.study_date or date(1, 1, 1)
    if base == "age_years":
        return study.age_years if study.age_years is not None else -1
    return study.pseudonym


def search_studies(
    conn: psycopg.Connection,
    filters: StudyFilters,
    *,
    sort: str = "-study_date",
    limit: int = 50,
    cursor: str | None = None,
) -> StudyPage:
    """Return one page of studies matching ``filters`` in ``sort`` order, continuing after ``cursor``.

    Keyset pagination on (sort expression, study UID): each page is an index range scan, so page 1,000
    costs what page 1 costs, and rows inserted meanwhile never shift or duplicate results.
    """
    if sort not in SORT_KEYS:
        raise CatalogError(f"sort must be one of {', '.join(SORT_KEYS)}")
    if not 1 <= limit <= 1000:
        raise CatalogError("limit must be between 1 and 1000")
    base = sort.lstrip("-")
    descending = sort.startswith("-")
    expr = sql.SQL(_SORT_EXPR[base])
    conds = _conditions(filters, level="study")
    if cursor:
        value, study_uid = decode_cursor(cursor, sort)
        op = sql.SQL("<") if descending else sql.SQL(">")
        conds.append(
            sql.SQL("({}, study_instance_uid) {} ({}, {})").format(
                expr, op, sql.Literal(value), sql.Literal(study_uid)
            )
        )
    direction = sql.SQL("DESC") if descending else sql.SQL("ASC")
    query = sql.SQL(
        "SELECT study_instance_uid, pseudonym, sex, age_years, ethnic_group, study_date, modalities, "
        "body_parts, view_positions, lateralities, manufacturers, models, series_count, instance_count, "
        "total_bytes FROM research_study {where} "
        "ORDER BY {expr} {dir}, study_instance_uid {dir} LIMIT {limit}"
    ).format(where=_where(conds), expr=expr, dir=direction, limit=sql.Literal(limit + 1))
    with conn.cursor(row_factory=class_row(StudySummary)) as cur:
        cur.execute(query)
        rows = cur.fetchall()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(sort, _sort_value(last, base), last.study_instance_uid)
    return StudyPage(items=rows, next_cursor=next_cursor)


def count_cohort(conn: psycopg.Connection, filters: StudyFilters) -> CohortCounts:
    """Return how many studies, instances and bytes a cohort manifest for ``filters`` would hold."""
    query = sql.SQL(
        "SELECT count(DISTINCT study_instance_uid), count(*), coalesce(sum(size_bytes), 0) "
        "FROM research_instance {}"
    ).format(_where(_conditions(filters, level="instance")))
    row = conn.execute(query).fetchone()
    assert row is not None
    return CohortCounts(studies=int(row[0]), instances=int(row[1]), total_bytes=int(row[2]))


MANIFEST_COLUMNS: tuple[str, ...] = (
    "bucket_key",
    "size_bytes",
    "sha256",
    "pseudonym",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "modality",
    "view_position",
    "laterality",
)


def iter_cohort_rows(
    conn: psycopg.Connection, filters: StudyFilters, *, batch_size: int = 5000
) -> Iterator[tuple[Any, ...]]:
    """Yield every instance matching ``filters`` as a tuple in :data:`MANIFEST_COLUMNS` order, ordered by
    bucket key, through a server-side cursor (tuples: the manifest path is per-row hot).

    The caller owns the transaction (a named cursor needs one); memory stays flat however large the cohort.
    """
    query = sql.SQL("SELECT {} FROM research_instance {} ORDER BY bucket_key").format(
        sql.SQL(", ").join(map(sql.Identifier, MANIFEST_COLUMNS)),
        _where(_conditions(filters, level="instance")),
    )
    # A cursor is planned for its first 10% by default (an ordered index walk over the whole table);
    # the whole result is wanted, so plan for all of it (a filtered scan and one sort).
    conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
    with conn.cursor(name="tmi_cohort_manifest") as cur:
        cur.itersize = batch_size
        cur.execute(query)
        yield from cur


def iter_cohort_instances(
    conn: psycopg.Connection, filters: StudyFilters, *, batch_size: int = 5000
) -> Iterator[ManifestRow]:
    """Like :func:`iter_cohort_rows`, as :class:`ManifestRow` objects."""
    for row in iter_cohort_rows(conn, filters, batch_size=batch_size):
        yield ManifestRow(*row)


def known_keys(conn: psycopg.Connection, keys: Sequence[str]) -> dict[str, ManifestRow]:
    """Return the catalog rows of those ``keys`` that are published research objects (others are absent)."""
    with conn.cursor(row_factory=class_row(ManifestRow)) as cur:
        cur.execute(
            "SELECT bucket_key, size_bytes, sha256, pseudonym, study_instance_uid, series_instance_uid, "
            "sop_instance_uid, modality, view_position, laterality FROM research_instance "
            "WHERE bucket_key = ANY(%s)",
            (list(keys),),
        )
        return {row.bucket_key: row for row in cur.fetchall()}


def facets(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Return the distinct values of the categorical filters present in the catalog (for pick-lists)."""
    row = conn.execute(
        "SELECT array(SELECT DISTINCT sex FROM research_study WHERE sex IS NOT NULL ORDER BY 1), "
        "array(SELECT DISTINCT ethnic_group FROM research_study WHERE ethnic_group IS NOT NULL ORDER BY 1), "
        "array(SELECT DISTINCT unnest(modalities) FROM research_study ORDER BY 1), "
        "array(SELECT DISTINCT unnest(body_parts) FROM research_study ORDER BY 1), "
        "array(SELECT DISTINCT unnest(view_positions) FROM research_study ORDER BY 1), "
        "array(SELECT DISTINCT unnest(lateralities) FROM research_study ORDER BY 1)"
    ).fetchone()
    assert row is not None
    names = ("sex", "ethnic_group", "modality", "body_part", "view_position", "laterality")
    return {name: list(values) for name, values in zip(names, row, strict=True)}
