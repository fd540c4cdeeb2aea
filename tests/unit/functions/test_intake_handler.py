"""The intake handler: partial batch responses, test events, direct S3 documents (service faked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.pipeline.service import Outcome, ProcessResult
from functions.events import S3ObjectRef
from functions.intake_handler import handle_s3_document, handle_sqs_event
from tmi.errors import RetryableError

EVENTS = Path(__file__).resolve().parents[2] / "events"


class FakeService:
    """Records calls; keys listed in ``retry`` raise RetryableError, ``quarantine`` are quarantined."""

    def __init__(self, retry: set[str] = frozenset(), quarantine: set[str] = frozenset()) -> None:
        self.retry, self.quarantine = retry, quarantine
        self.calls: list[S3ObjectRef] = []

    def process(self, obj: S3ObjectRef, request_id: str = "") -> ProcessResult:
        self.calls.append(obj)
        if obj.key in self.retry:
            raise RetryableError("research Orthanc unavailable")
        if obj.key in self.quarantine:
            return ProcessResult(Outcome.QUARANTINED, obj.key, reason="dicom.unparseable")
        return ProcessResult(Outcome.PUBLISHED, obj.key, pseudonym="TMI-0000000000")


def sqs_event(*keys: str, raw: dict[str, str] | None = None) -> dict[str, Any]:
    records = []
    for n, key in enumerate(keys):
        s3 = {"bucket": {"name": "tmi-intake"}, "object": {"key": key, "eTag": f"e{n}"}}
        body = {"Records": [{"eventName": "ObjectCreated:Put", "s3": s3}]}
        records.append({"messageId": f"m{n}", "body": json.dumps(body), "eventSource": "aws:sqs",
                        "attributes": {"ApproximateReceiveCount": "2"}})
    for message_id, body in (raw or {}).items():
        records.append({"messageId": message_id, "body": body, "eventSource": "aws:sqs"})
    return {"Records": records}


@pytest.mark.parametrize("threads", [1, 4])
def test_only_retryable_failures_are_reported(threads: int) -> None:
    service = FakeService(retry={"incoming/b.dcm"}, quarantine={"incoming/c.dcm"})
    response, results = handle_sqs_event(
        sqs_event("incoming/a.dcm", "incoming/b.dcm", "incoming/c.dcm"), service, threads=threads)  # type: ignore[arg-type]
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert sorted(r.outcome for r in results) == [Outcome.PUBLISHED, Outcome.QUARANTINED]
    assert len(service.calls) == 3


def test_test_event_is_skipped_and_acknowledged() -> None:
    service = FakeService()
    event = json.loads((EVENTS / "sqs_s3_test_event.json").read_text())
    response, results = handle_sqs_event(event, service)  # type: ignore[arg-type]
    assert response == {"batchItemFailures": []}
    assert results == [] and service.calls == []


def test_malformed_message_is_a_batch_item_failure_so_it_reaches_the_dlq() -> None:
    service = FakeService()
    response, _ = handle_sqs_event(sqs_event("incoming/a.dcm", raw={"bad": "{not json"}), service)  # type: ignore[arg-type]
    assert response == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert [c.key for c in service.calls] == ["incoming/a.dcm"]


def test_saved_moto_event_reaches_the_service_with_the_decoded_key() -> None:
    service = FakeService()
    event = json.loads((EVENTS / "sqs_s3_put_moto.json").read_text())
    response, _ = handle_sqs_event(event, service)  # type: ignore[arg-type]
    assert response == {"batchItemFailures": []}
    assert [c.key for c in service.calls] == ["incoming/2026/11/21/a b+c.dcm"]


def test_direct_s3_document_reports_failed_keys() -> None:
    service = FakeService(retry={"incoming/2026/11/21/a b+c.dcm"})
    document = json.loads((EVENTS / "minio_webhook_put.json").read_text())
    outcome = handle_s3_document(document, service)  # type: ignore[arg-type]
    assert outcome["failed"] == ["incoming/2026/11/21/a b+c.dcm"]
    ok = handle_s3_document(document, FakeService())  # type: ignore[arg-type]
    assert ok["failed"] == [] and ok["processed"][0]["outcome"] == "published"
