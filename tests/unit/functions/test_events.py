"""The S3/SQS event wrappers, on events saved from moto's server and from MinIO's webhook format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from functions.events import (
    MalformedEventError,
    S3ObjectRef,
    SqsMessage,
    is_sqs_event,
    parse_s3_document,
    parse_sqs_event,
    s3_event_document,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_moto_sqs_record_key_is_url_decoded_exactly_once() -> None:
    [message] = list(parse_sqs_event(load("sqs_s3_put_moto.json")))
    assert isinstance(message, SqsMessage)
    assert message.message_id == "fd37b581-7f95-4482-9c08-d14e8196c600"
    assert message.receive_count == 1
    [obj] = message.objects
    # moto encodes "/" as %2F, " " as "+" and "+" as %2B: one unquote_plus gives the real key back.
    assert obj == S3ObjectRef(bucket="tmi-intake", key="incoming/2026/11/21/a b+c.dcm",
                              etag="9dd4e461268c8034f5c8564e155c67a6", size=1,
                              event_name="ObjectCreated:Put", event_time="2026-11-21T22:03:03.438Z")
    assert obj.idempotency_key == "tmi-intake/incoming/2026/11/21/a b+c.dcm#9dd4e461268c8034f5c8564e155c67a6"


def test_s3_test_event_is_recognised_and_carries_no_objects() -> None:
    [message] = list(parse_sqs_event(load("sqs_s3_test_event.json")))
    assert isinstance(message, SqsMessage)
    assert message.is_test_event and message.objects == ()


def test_minio_webhook_document_parses_to_the_same_object() -> None:
    objects, is_test = parse_s3_document(load("minio_webhook_put.json"))
    assert not is_test
    [obj] = objects
    assert obj.key == "incoming/2026/11/21/a b+c.dcm"
    assert obj.version_id == "1"
    assert obj.idempotency_key.endswith("#1")  # a version id wins over the ETag


def test_a_key_with_a_literal_percent_is_not_decoded_twice() -> None:
    document = s3_event_document("b", "incoming/100%25done.dcm")
    [obj], _ = parse_s3_document(document)
    assert obj.key == "incoming/100%25done.dcm"


def test_reconcile_documents_round_trip() -> None:
    key = "incoming/2026/01/02/x y+z.dcm"
    [obj], _ = parse_s3_document(s3_event_document("tmi-intake", key, etag="abc", size=3))
    assert (obj.bucket, obj.key, obj.etag, obj.size) == ("tmi-intake", key, "abc", 3)


def test_non_created_events_are_ignored() -> None:
    document = load("minio_webhook_put.json")
    document["Records"][0]["eventName"] = "s3:ObjectRemoved:Delete"
    assert parse_s3_document(document) == ((), False)


@pytest.mark.parametrize("body", ["not json", "[1, 2]", json.dumps({"Records": "x"}),
                                  json.dumps({"Records": [{"s3": {}}]})])
def test_malformed_bodies_are_reported_with_their_message_id(body: str) -> None:
    event = {"Records": [{"messageId": "m1", "body": body, "eventSource": "aws:sqs"}]}
    [item] = list(parse_sqs_event(event))
    assert isinstance(item, tuple)
    assert item[0] == "m1" and isinstance(item[1], MalformedEventError)


def test_is_sqs_event() -> None:
    assert is_sqs_event(load("sqs_s3_put_moto.json"))
    assert not is_sqs_event(load("minio_webhook_put.json"))
    assert not is_sqs_event({})
