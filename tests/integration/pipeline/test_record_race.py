"""Workers recording the first instances of one new study at the same moment all succeed.

The four views of a mammography study arrive together and are processed by different workers. ON CONFLICT
arbitrates the study/series upserts on the original UIDs only, so before the retry in
``CrosswalkService.record_instance`` the later insert failed on the anonymized UID's unique index and the
instance waited for the queue's visibility timeout (the benchmark's occasional two-minute stall).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from adapters.db.crosswalk import CrosswalkService
from adapters.db.migrate import migrate
from tmi.ports import PatientPHI

pytestmark = pytest.mark.integration
WORKERS = 4
STUDIES = 40


def test_concurrent_first_instances_of_one_study(pg_dsn: str) -> None:
    migrate(pg_dsn)
    services = [CrosswalkService.connect(pg_dsn, min_size=1, max_size=1) for _ in range(WORKERS)]
    try:
        person = services[0].resolve(PatientPHI(patient_id="R1", issuer="CLINIC-A", name="Race^Rita",
                                                birth_date="19900101", sex="F"))
        for study in range(STUDIES):
            barrier = threading.Barrier(WORKERS)

            def work(i: int, study: int = study, barrier: threading.Barrier = barrier) -> int:
                barrier.wait(timeout=30)
                record = services[i].record_instance(
                    person_id=person.person_id, identity_id=person.identity_id,
                    original_study_uid=f"1.2.{study}", anon_study_uid=f"2.25.9{study}",
                    original_series_uid=f"1.2.{study}.1", anon_series_uid=f"2.25.9{study}1",
                    original_sop_uid=f"1.2.{study}.1.{i}", anon_sop_uid=f"2.25.9{study}1{i}",
                    state="published", intake_key=f"incoming/{study}-{i}.dcm")
                assert record.anon_study_uid == f"2.25.9{study}"
                return record.id

            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                ids = list(pool.map(work, range(WORKERS)))
            assert len(set(ids)) == WORKERS
    finally:
        for service in services:
            service.close()
    with psycopg.connect(pg_dsn) as conn:
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()
                  for t in ("study", "series", "instance")]
        audits = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'crosswalk.instance.record'"
                              ).fetchone()
    assert [c[0] for c in counts if c] == [STUDIES, STUDIES, STUDIES * WORKERS]
    assert audits is not None and audits[0] == STUDIES * WORKERS
