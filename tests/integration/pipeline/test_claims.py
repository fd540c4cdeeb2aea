"""Idempotency claims against a real PostgreSQL (conditional upsert, takeover, duplicate detection)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.pipeline.claims import ClaimState, ClaimStore
from adapters.pipeline.service import IntakeService, Outcome
from functions.events import S3ObjectRef
from tmi.errors import RetryableError

pytestmark = pytest.mark.integration

OBJ = S3ObjectRef(bucket="tmi-intake", key="incoming/2026/01/01/abc.dcm", etag="e1")


@pytest.fixture
def store(pg_dsn: str) -> Iterator[ClaimStore]:
    from psycopg_pool import ConnectionPool

    from adapters.db.migrate import migrate

    migrate(pg_dsn)
    pool: ConnectionPool = ConnectionPool(pg_dsn, min_size=1, max_size=4, open=False,
                                          kwargs={"autocommit": True})
    pool.open(wait=True)
    yield ClaimStore(pool, claim_ttl_s=1)
    pool.close()


def test_first_claim_wins_and_finished_objects_are_never_claimed_again(store: ClaimStore) -> None:
    assert store.claim(OBJ, "m1").claimed
    second = store.claim(OBJ, "m2")
    assert (second.claimed, second.state, second.message) == (False, ClaimState.IN_PROGRESS, "m1")
    store.complete(OBJ, pseudonym="TMI-0000000000", research_key="k", study_uid="1", series_uid="2",
                   sop_uid="3")
    assert store.claim(OBJ, "m3").state == ClaimState.COMPLETED
    assert store.finished_among("tmi-intake", [OBJ.key, "incoming/other.dcm"]) == {OBJ.key}
    assert store.finished_among("other-bucket", [OBJ.key]) == set()
    # Another version of the same key (new bytes → new ETag) is new work.
    assert store.claim(S3ObjectRef(OBJ.bucket, OBJ.key, "e2"), "m4").claimed


def test_expired_or_released_claims_are_taken_over(store: ClaimStore) -> None:
    assert store.claim(OBJ, "m1").claimed
    time.sleep(1.2)  # ttl 1 s: the holder is presumed dead
    taken = store.claim(OBJ, "m1")
    assert taken.claimed and taken.attempts == 2
    store.release(OBJ, "RetryableError")
    assert store.claim(OBJ, "m2").claimed


class _Unused:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call {name}")


def test_service_acknowledges_duplicates_and_retries_its_own_redelivery(store: ClaimStore) -> None:
    service = IntakeService(s3=_Unused(), claims=store, deidentifier=_Unused(), archive=_Unused(),
                            recorder=_Unused(), research_bucket="r", quarantine_bucket="q")
    assert store.claim(OBJ, "holder").claimed
    # A duplicate notification (another message) while the holder works: acknowledged.
    assert service.process(OBJ, request_id="duplicate").outcome == Outcome.DUPLICATE
    # The holder's own message redelivered (holder died): retried until the claim expires.
    with pytest.raises(RetryableError):
        service.process(OBJ, request_id="holder")
