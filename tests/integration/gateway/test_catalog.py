"""The research catalog on a real PostgreSQL: study aggregates, filters with missing values, keyset pages,
moves and deletes, and concurrent publishes of one study."""

from __future__ import annotations

import hashlib
import threading
from datetime import date

import psycopg
import pytest

from adapters.db import catalog

pytestmark = pytest.mark.integration


def _entry(n: int, study: str, **kw: object) -> catalog.CatalogEntry:
    values: dict[str, object] = {
        "sop_instance_uid": f"{study}.1.{n}",
        "series_instance_uid": f"{study}.1",
        "study_instance_uid": study,
        "pseudonym": "TMI-0000000001",
        "bucket_key": f"TMI-0000000001/{study}/{study}.1/{n}.dcm",
        "size_bytes": 100 + n,
        "sha256": hashlib.sha256(str(n).encode()).hexdigest(),
    }
    values.update(kw)
    return catalog.CatalogEntry(**values)  # type: ignore[arg-type]


def test_aggregates_moves_and_deletes(gateway_dsn: str) -> None:
    with psycopg.connect(gateway_dsn, autocommit=True) as conn:
        catalog.upsert_instance(conn, _entry(1, "2.25.1", view_position="CC", laterality="L", modality="MG"))
        catalog.upsert_instance(conn, _entry(2, "2.25.1", view_position="MLO", laterality="R", modality="MG"))
        catalog.upsert_instance(conn, _entry(2, "2.25.1", view_position="MLO", laterality="R", modality="MG"))
        (study,) = catalog.search_studies(conn, catalog.StudyFilters()).items
        assert (study.instance_count, study.view_positions, study.lateralities) == (
            2,
            ["CC", "MLO"],
            ["L", "R"],
        )
        # a republish moves instance 2 (same SOP UID) to another study, pseudonym and key
        moved = _entry(
            2,
            "2.25.2",
            sop_instance_uid="2.25.1.1.2",
            pseudonym="TMI-0000000002",
            bucket_key="TMI-0000000002/x.dcm",
        )
        catalog.upsert_instance(conn, moved)
        everything = catalog.search_studies(conn, catalog.StudyFilters()).items
        studies = {s.study_instance_uid: s for s in everything}
        assert studies["2.25.1"].instance_count == 1 and studies["2.25.2"].pseudonym == "TMI-0000000002"
        assert catalog.delete_instance(conn, "2.25.1.1.2") is True
        assert catalog.delete_instance(conn, "2.25.1.1.2") is False
        remaining = catalog.search_studies(conn, catalog.StudyFilters()).items
        assert [s.study_instance_uid for s in remaining] == ["2.25.1"]


def test_filters_with_missing_values_and_keyset_pages(gateway_dsn: str) -> None:
    with psycopg.connect(gateway_dsn, autocommit=True) as conn:
        for i in range(30):
            catalog.upsert_instance(
                conn,
                _entry(
                    i,
                    f"2.25.{100 + i}",
                    age_years=None if i % 5 == 0 else 20 + i,
                    study_date=None if i % 7 == 0 else date(2020, 1, 1 + i),
                ),
            )
        f = catalog.StudyFilters
        young = catalog.search_studies(conn, f(age_max=35), limit=100).items
        assert len(young) == 12  # i = 1..15 (age 21..35) without the missing ages (i % 5 == 0)
        assert all(s.age_years is not None for s in young)
        dated = catalog.search_studies(conn, f(study_date_to=date(2020, 1, 10)), limit=100).items
        assert sorted(s.study_date.day for s in dated if s.study_date) == [2, 3, 4, 5, 6, 7, 9, 10]
        assert len(dated) == 8
        for sort in catalog.SORT_KEYS:
            seen, cursor = [], None
            while True:
                page = catalog.search_studies(conn, f(), sort=sort, limit=7, cursor=cursor)
                seen += [s.study_instance_uid for s in page.items]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert len(seen) == len(set(seen)) == 30, sort
            whole = catalog.search_studies(conn, f(), sort=sort, limit=100).items
            assert seen == [s.study_instance_uid for s in whole], sort


@pytest.mark.parametrize("autocommit", [False, True], ids=["in-transaction", "autocommit-pipelined"])
def test_concurrent_publishes_of_one_study_keep_exact_counts(gateway_dsn: str, autocommit: bool) -> None:
    """Both code paths: a caller's transaction, and the pipeline's autocommit pool (locks, insert and
    study refresh pipelined as one implicit transaction)."""
    errors: list[BaseException] = []
    short: list[tuple[int, int]] = []
    # Every fifth publish of the four threads starts at the same moment (barrier), and the study row is
    # checked once all four committed: without the study lock their aggregates are computed side by
    # side, each missing the others' new instance, and the row is left short.
    start_round, end_round = threading.Barrier(4), threading.Barrier(4)

    def publish(start: int) -> None:
        try:
            with psycopg.connect(gateway_dsn, autocommit=autocommit) as conn:
                for i, n in enumerate(range(start, start + 20)):
                    synchronized = i % 5 == 4
                    if synchronized:
                        start_round.wait(timeout=30)
                    if autocommit:
                        catalog.upsert_instance(conn, _entry(n, "2.25.9", view_position="CC"))
                    else:
                        with conn.transaction():
                            catalog.upsert_instance(conn, _entry(n, "2.25.9", view_position="CC"))
                    if synchronized:
                        end_round.wait(timeout=30)
                        if start == 0:
                            with psycopg.connect(gateway_dsn, autocommit=True) as check:
                                row = check.execute("SELECT instance_count FROM research_study "
                                                    "WHERE study_instance_uid = '2.25.9'").fetchone()
                            if row is None or row[0] != 4 * (i + 1):
                                short.append((4 * (i + 1), row[0] if row else 0))
                        end_round.wait(timeout=30)  # nobody publishes while thread 0 checks
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(k * 20,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert short == [], "study row short after simultaneous publishes (expected, found)"
    with psycopg.connect(gateway_dsn, autocommit=True) as conn:
        (study,) = catalog.search_studies(conn, catalog.StudyFilters()).items
        assert study.instance_count == 80
        assert study.total_bytes == sum(100 + n for n in range(80))
