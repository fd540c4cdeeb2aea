"""Two (or eight) workers resolving one brand-new patient at the same moment create exactly one person.

Each thread has its own service, hence its own PostgreSQL connection; a barrier releases them together.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from adapters.db.crosswalk import CrosswalkService, Resolution
from tmi.ports import PatientPHI

pytestmark = pytest.mark.integration
WORKERS = 8


def _race(dsn: str, phis: list[PatientPHI]) -> list[Resolution]:
    services = [CrosswalkService.connect(dsn, min_size=1, max_size=1) for _ in phis]
    barrier = threading.Barrier(len(phis))

    def work(i: int) -> Resolution:
        barrier.wait(timeout=30)
        return services[i].resolve(phis[i])

    try:
        with ThreadPoolExecutor(max_workers=len(phis)) as pool:
            return list(pool.map(work, range(len(phis))))
    finally:
        for service in services:
            service.close()


def _count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize("rounds", [3])
def test_identical_new_patient_one_person(cw_dsn: str, rounds: int) -> None:
    for n in range(rounds):
        phi = PatientPHI(patient_id=f"NEW-{n}", issuer="CLINIC-A", name="Race^Rita", birth_date="19900101",
                         sex="F")
        results = _race(cw_dsn, [phi] * WORKERS)
        assert len({r.person_id for r in results}) == 1
        assert len({r.identity_id for r in results}) == 1
        assert sum(r.created_person for r in results) == 1
    assert _count(cw_dsn, "person") == rounds
    assert _count(cw_dsn, "scan_identity") == rounds


def test_same_key_spelled_differently_one_person(cw_dsn: str) -> None:
    # Instances of one new patient from different modalities: raw PHI differs, normalized PHI does not.
    names = ["Race^Rita", "RACE^RITA", "race^rita^^^", "Rita^Race"]
    phis = [PatientPHI(patient_id="NEW-X", issuer="CLINIC-A", name=names[i % 4], birth_date="19900101",
                       sex="F", calling_aet=f"MOD{i}") for i in range(WORKERS)]
    results = _race(cw_dsn, phis)
    assert len({r.person_id for r in results}) == 1
    assert sum(r.created_person for r in results) == 1
    assert _count(cw_dsn, "person") == 1
    assert _count(cw_dsn, "scan_identity") == WORKERS
    assert _count(cw_dsn, "review_flag") == 0


def test_same_phi_two_clinics_at_once_is_flagged(cw_dsn: str) -> None:
    # Rule 4 under concurrency: the (name, birth date) lock makes the second one see the first.
    phis = [PatientPHI(patient_id=f"P{i}", issuer=f"CLINIC-{i}", name="Twin^Tom", birth_date="19850505",
                       sex="M") for i in range(2)]
    results = _race(cw_dsn, phis)
    assert results[0].person_id != results[1].person_id
    flagged = [r for r in results if r.flags == ("possible_same_person",)]
    assert len(flagged) == 1


def test_guard_sees_what_the_lock_holder_committed(cw_dsn: str) -> None:
    """resolve()'s write is one statement whose guard function takes the advisory lock and only then
    counts (migration 0004). A count on the statement's own snapshot, taken before the lock was
    granted, would miss the identity the previous holder committed, and two people would be created."""
    lock = 4242
    holder = psycopg.connect(cw_dsn)  # a transaction: holds the lock until it commits
    waiter = psycopg.connect(cw_dsn, autocommit=True)
    guard_call = ("SELECT crosswalk_resolve_guard(%s, 'clinic-a', 'p-1', 0, NULL, NULL, 0, 'fp-waiter', "
                  "true, NULL, '{}')")
    try:
        row = waiter.execute(guard_call, ([lock],)).fetchone()
        assert row == (True,)  # nothing under the key yet
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(
            waiter.execute(guard_call, ([lock],)).fetchone()))
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the lock
        holder.execute(
            "INSERT INTO scan_identity (kind, clinic_key, patient_id_norm, fingerprint, created_by, "
            "created_role) VALUES ('arrived', 'clinic-a', 'p-1', 'fp-holder', 'test', 'service')")
        holder.commit()  # releases the lock with the identity committed
        thread.join(10)
        assert result == [(False,)]  # the group under the key grew: the write would be refused
    finally:
        holder.close()
        waiter.close()
