"""The reconciler lists only the look-back days by default, the whole prefix on request, and asks for the
finished records one listed page at a time (in-process fakes of S3, SQS and the claim store)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import pytest

from adapters.pipeline.reconcile import day_prefixes, reconcile

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(hours=1)


class FakeS3:
    """``list_objects_v2`` pagination over a dict of key -> LastModified, ``page_size`` keys a page."""

    def __init__(self, objects: dict[str, datetime], page_size: int = 2) -> None:
        self.objects = objects
        self.page_size = page_size
        self.listed_prefixes: list[str] = []

    def get_paginator(self, name: str) -> FakeS3:
        assert name == "list_objects_v2"
        return self

    def paginate(self, *, Bucket: str, Prefix: str, StartAfter: str = "") -> Any:
        assert Bucket == "tmi-intake"
        self.listed_prefixes.append(Prefix)
        keys = sorted(k for k in self.objects if k.startswith(Prefix) and k > StartAfter)
        for i in range(0, len(keys), self.page_size):
            yield {"Contents": [{"Key": k, "LastModified": self.objects[k], "ETag": '"e"', "Size": 1}
                                for k in keys[i:i + self.page_size]]}
        if not keys:
            yield {"KeyCount": 0}


class FakeSQS:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": f"url/{QueueName}"}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> None:
        assert len(Entries) <= 10
        for entry in Entries:
            [record] = json.loads(entry["MessageBody"])["Records"]
            self.sent.append(unquote_plus(record["s3"]["object"]["key"]))  # URL-encoded, as S3 does


class FakeClaims:
    def __init__(self, finished: set[str]) -> None:
        self.finished = finished
        self.asked: list[list[str]] = []

    def finished_among(self, bucket: str, keys: list[str]) -> set[str]:
        self.asked.append(list(keys))
        return {k for k in keys if k in self.finished}


def _bucket() -> dict[str, datetime]:
    return {
        "incoming/2026/03/02/today-a.dcm": OLD,
        "incoming/2026/03/02/today-young.dcm": NOW - timedelta(seconds=10),
        "incoming/2026/03/01/yesterday.dcm": OLD,
        "incoming/2026/02/28/three-days.dcm": OLD,
        "incoming/2026/02/01/last-month.dcm": OLD,
        "incoming/2026/03/02/done.dcm": OLD,
        "incoming/legacy-layout.dcm": OLD,
        "elsewhere/2026/03/02/not-intake.dcm": OLD,
    }


def test_day_prefixes_cover_today_and_the_look_back_days() -> None:
    assert day_prefixes("incoming/", 2, date(2026, 3, 1)) == [
        "incoming/2026/03/01/", "incoming/2026/02/28/", "incoming/2026/02/27/"]
    assert day_prefixes("incoming", 0, date(2026, 1, 9)) == ["incoming/2026/01/09/"]


@pytest.mark.parametrize(("lookback", "expected"), [
    (1, ["incoming/2026/03/01/yesterday.dcm", "incoming/2026/03/02/today-a.dcm"]),
    (2, ["incoming/2026/02/28/three-days.dcm", "incoming/2026/03/01/yesterday.dcm",
         "incoming/2026/03/02/today-a.dcm"]),
    (None, ["incoming/2026/02/01/last-month.dcm", "incoming/2026/02/28/three-days.dcm",
            "incoming/2026/03/01/yesterday.dcm", "incoming/2026/03/02/today-a.dcm",
            "incoming/legacy-layout.dcm"]),
])
def test_reconcile_re_enqueues_unfinished_objects_in_scope(lookback: int | None, expected: list[str]) -> None:
    s3, sqs, claims = FakeS3(_bucket()), FakeSQS(), FakeClaims({"incoming/2026/03/02/done.dcm"})
    report = reconcile(s3, sqs, claims, bucket="tmi-intake", prefix="incoming/", queue_name="q",
                       min_age_s=60, lookback_days=lookback, now=NOW)
    assert sorted(sqs.sent) == expected
    assert sorted(report.enqueued) == expected
    assert report.finished == 1 and report.too_young == 1
    assert report.listed == len(expected) + 2
    if lookback is None:
        assert s3.listed_prefixes == ["incoming/"]
    else:
        assert s3.listed_prefixes == day_prefixes("incoming/", lookback, NOW.date())


def test_finished_records_are_asked_for_one_listed_page_at_a_time() -> None:
    objects = {f"incoming/2026/03/02/{i:03d}.dcm": OLD for i in range(7)}
    s3, sqs, claims = FakeS3(objects, page_size=3), FakeSQS(), FakeClaims(set(objects))
    report = reconcile(s3, sqs, claims, bucket="tmi-intake", prefix="incoming/", queue_name="q",
                       min_age_s=60, lookback_days=0, now=NOW)
    assert [len(keys) for keys in claims.asked] == [3, 3, 1]  # never the whole bucket at once
    assert (report.listed, report.finished, sqs.sent) == (7, 7, [])


def test_dry_run_lists_without_sending() -> None:
    s3, sqs, claims = FakeS3(_bucket()), FakeSQS(), FakeClaims(set())
    report = reconcile(s3, sqs, claims, bucket="tmi-intake", prefix="incoming/", queue_name="q",
                       min_age_s=60, lookback_days=0, now=NOW, dry_run=True)
    assert sqs.sent == []
    assert sorted(report.enqueued) == ["incoming/2026/03/02/done.dcm", "incoming/2026/03/02/today-a.dcm"]


def test_the_report_names_at_most_the_first_thousand_keys() -> None:
    objects = {f"incoming/2026/03/02/{i:05d}.dcm": OLD for i in range(1203)}
    s3, sqs = FakeS3(objects, page_size=1000), FakeSQS()
    report = reconcile(s3, sqs, FakeClaims(set()), bucket="tmi-intake", prefix="incoming/", queue_name="q",
                       min_age_s=60, lookback_days=0, now=NOW)
    assert len(sqs.sent) == 1203
    view = report.to_dict()
    assert view["enqueued"] == 1203 and len(view["keys"]) == 1000


def test_a_full_sweep_stopped_early_resumes_after_its_last_key_and_skips_nothing() -> None:
    objects = {f"incoming/2026/03/02/{i:03d}.dcm": OLD for i in range(7)}
    s3, sqs, claims = FakeS3(objects, page_size=3), FakeSQS(), FakeClaims({"incoming/2026/03/02/004.dcm"})
    pages_seen: list[int] = []

    def stop_after_first_page() -> bool:
        pages_seen.append(len(claims.asked))
        return True

    first = reconcile(s3, sqs, claims, bucket="tmi-intake", prefix="incoming/", queue_name="q", min_age_s=60,
                      now=NOW, should_stop=stop_after_first_page)
    assert (first.listed, first.complete, first.next_start_after) == (3, False, "incoming/2026/03/02/002.dcm")
    assert first.to_dict()["next_start_after"] == "incoming/2026/03/02/002.dcm"
    assert sqs.sent == [f"incoming/2026/03/02/{i:03d}.dcm" for i in range(3)]  # the page it stopped on: sent

    second = reconcile(s3, sqs, claims, bucket="tmi-intake", prefix="incoming/", queue_name="q", min_age_s=60,
                       now=NOW, start_after=first.next_start_after, should_stop=lambda: False)
    assert (second.listed, second.finished, second.complete) == (4, 1, True)
    assert second.to_dict()["next_start_after"] is None
    # Every object exactly once over the two runs, the finished one not at all.
    assert sqs.sent == [f"incoming/2026/03/02/{i:03d}.dcm" for i in range(7) if i != 4]
    assert pages_seen == [1]


def test_a_windowed_run_ignores_should_stop_and_refuses_a_start_key() -> None:
    s3, sqs, claims = FakeS3(_bucket(), page_size=1), FakeSQS(), FakeClaims(set())
    report = reconcile(s3, sqs, claims, bucket="tmi-intake", prefix="incoming/", queue_name="q", min_age_s=60,
                       lookback_days=2, now=NOW, should_stop=lambda: True)
    assert report.complete and len(sqs.sent) == 4  # the look-back days are few: always listed to the end
    with pytest.raises(ValueError, match="full sweep"):
        reconcile(s3, sqs, claims, bucket="tmi-intake", prefix="incoming/", queue_name="q", lookback_days=2,
                  start_after="incoming/2026/03/01/yesterday.dcm")
