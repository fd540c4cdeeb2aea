"""Small typed wrappers over the events TMI's functions receive.

Three shapes arrive, all carrying the same S3 event records:

* **S3-in-SQS** (AWS, LocalStack, moto's server, and ``tmi worker``): an SQS batch whose message bodies
  are S3 notification documents ``{"Records": [...]}``, or the ``s3:TestEvent`` S3 sends when a
  notification is configured (skipped).
* **Direct S3 records** (MinIO's webhook target posts ``{"EventName", "Key", "Records": [...]}`` to the
  gateway's ``/events/s3`` route; AWS invokes Lambda with ``{"Records": [...]}`` the same way).

Object keys in S3 event records are URL-encoded (``incoming%2Fa+b.dcm``); they are decoded with
``unquote_plus`` here, exactly once, and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

TEST_EVENT = "s3:TestEvent"


class MalformedEventError(ValueError):
    """The event (or one SQS message body) is not an S3 event record document."""


@dataclass(frozen=True, slots=True)
class S3ObjectRef:
    """One object named by an S3 event record: bucket, decoded key, ETag (unquoted) and version."""

    bucket: str
    key: str
    etag: str = ""
    version_id: str | None = None
    size: int | None = None
    event_name: str = ""
    event_time: str = ""

    @property
    def idempotency_key(self) -> str:
        """The claim key: bucket + key + (version or ETag); a rewrite with new bytes is new work."""
        return f"{self.bucket}/{self.key}#{self.version_id or self.etag}"


@dataclass(frozen=True, slots=True)
class SqsMessage:
    """One SQS record of a batch: its id (for ``batchItemFailures``), receive count and S3 objects."""

    message_id: str
    receive_count: int
    objects: tuple[S3ObjectRef, ...]
    is_test_event: bool = False


def _object_from_record(record: Mapping[str, Any]) -> S3ObjectRef | None:
    """Parse one S3 event record; ``None`` for records that are not object-created events."""
    try:
        s3 = record["s3"]
        bucket = str(s3["bucket"]["name"])
        obj = s3["object"]
        raw_key = str(obj["key"])
    except (KeyError, TypeError) as exc:
        raise MalformedEventError(f"not an S3 event record: missing {exc}") from exc
    event_name = str(record.get("eventName", ""))
    if event_name and "ObjectCreated" not in event_name:
        return None
    size = obj.get("size")
    return S3ObjectRef(
        bucket=bucket,
        key=unquote_plus(raw_key),
        etag=str(obj.get("eTag") or obj.get("etag") or "").strip('"'),
        version_id=(str(obj["versionId"]) if obj.get("versionId") not in (None, "", "null") else None),
        size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        event_name=event_name,
        event_time=str(record.get("eventTime", "")),
    )


def parse_s3_document(document: Mapping[str, Any]) -> tuple[tuple[S3ObjectRef, ...], bool]:
    """Parse an S3 notification document; return (objects, is_test_event)."""
    if document.get("Event") == TEST_EVENT:
        return (), True
    records = document.get("Records")
    if not isinstance(records, list):
        raise MalformedEventError("S3 notification without a Records list")
    objects = tuple(o for o in (_object_from_record(r) for r in records) if o is not None)
    return objects, False


def parse_sqs_event(event: Mapping[str, Any]) -> Iterator[SqsMessage | tuple[str, MalformedEventError]]:
    """Yield each SQS record of ``event`` as a :class:`SqsMessage`, or ``(messageId, error)`` when its
    body is not an S3 notification (the handler reports it as a batch item failure so it ends in the DLQ).
    """
    for record in event.get("Records", []):
        message_id = str(record.get("messageId", ""))
        try:
            body = json.loads(record.get("body") or "")
            if not isinstance(body, dict):
                raise MalformedEventError("SQS body is not a JSON object")
            objects, is_test = parse_s3_document(body)
        except (json.JSONDecodeError, MalformedEventError) as exc:
            err = exc if isinstance(exc, MalformedEventError) else MalformedEventError(f"bad JSON: {exc.msg}")
            yield message_id, err
            continue
        receive_count = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1") or 1)
        yield SqsMessage(message_id=message_id, receive_count=receive_count, objects=objects,
                         is_test_event=is_test)


def is_sqs_event(event: Mapping[str, Any]) -> bool:
    """True when ``event`` is an SQS batch (records with ``eventSource == "aws:sqs"`` or a ``body``)."""
    records = event.get("Records")
    if not isinstance(records, list) or not records:
        return False
    first = records[0]
    return isinstance(first, Mapping) and (first.get("eventSource") == "aws:sqs" or "body" in first)


def s3_event_document(bucket: str, key: str, etag: str = "", size: int | None = None,
                      event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """Build an S3 event document for ``bucket``/``key`` as S3 would send it (key URL-encoded).

    Used by ``tmi reconcile`` to re-enqueue objects whose notification was lost.
    """
    from urllib.parse import quote_plus

    obj: dict[str, Any] = {"key": quote_plus(key), "eTag": etag}
    if size is not None:
        obj["size"] = size
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "tmi:reconcile",
                "eventName": event_name,
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj},
            }
        ]
    }
