"""Lambda-shaped handler for intake bucket notifications.

``handler(event, context)`` accepts an SQS batch of S3 notifications (AWS, LocalStack, moto, ``tmi
worker``) and returns ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`` naming only the
messages to retry. ``handle_s3_document`` takes S3 event records posted directly (MinIO webhook via the
gateway's ``/events/s3``) and returns which keys failed. Both call the same service for every object;
the handler itself only translates.

Per message: ``s3:TestEvent`` → skipped (success); malformed body → batch item failure (it reaches the DLQ
after ``maxReceiveCount``); published, quarantined or duplicate → success; retryable error → failure.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from functions.events import MalformedEventError, S3ObjectRef, SqsMessage, parse_s3_document, parse_sqs_event
from tmi.errors import RetryableError

if TYPE_CHECKING:
    from adapters.pipeline.service import IntakeService, ProcessResult

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _default_service() -> IntakeService:
    """The process-wide service, built on first use (nothing connects at import time)."""
    from adapters.pipeline.wiring import build_intake_service

    service: IntakeService = build_intake_service()
    return service


def _process_message(service: IntakeService, message: SqsMessage) -> tuple[bool, list[ProcessResult]]:
    results: list[ProcessResult] = []
    if message.is_test_event:
        logger.info("s3:TestEvent skipped", extra={"tmi": {"message_id": message.message_id}})
        return True, results
    for obj in message.objects:
        try:
            results.append(service.process(obj, request_id=message.message_id))
        except RetryableError as exc:
            logger.warning(
                "retryable failure; message will be redelivered",
                extra={"tmi": {"message_id": message.message_id, "object_key": obj.key,
                               "receive_count": message.receive_count, "error": str(exc)[:200]}},
            )
            return False, results
    return True, results


def handle_sqs_event(event: Mapping[str, Any], service: IntakeService, threads: int = 1,
                     ) -> tuple[dict[str, list[dict[str, str]]], list[ProcessResult]]:
    """Process an SQS batch; return the Lambda partial-batch response and every object's result."""
    failures: list[str] = []
    results: list[ProcessResult] = []
    messages: list[SqsMessage] = []
    for item in parse_sqs_event(event):
        if isinstance(item, SqsMessage):
            messages.append(item)
        else:
            message_id, error = item
            logger.error("malformed message", extra={"tmi": {"message_id": message_id, "error": str(error)}})
            failures.append(message_id)
    if threads > 1 and len(messages) > 1:
        with ThreadPoolExecutor(max_workers=min(threads, len(messages)),
                                thread_name_prefix="tmi-intake") as pool:
            outcomes = list(pool.map(lambda m: _process_message(service, m), messages))
    else:
        outcomes = [_process_message(service, m) for m in messages]
    for message, (ok, message_results) in zip(messages, outcomes, strict=True):
        results.extend(message_results)
        if not ok:
            failures.append(message.message_id)
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failures]}, results


def handle_s3_document(document: Mapping[str, Any], service: IntakeService | None = None,
                       request_id: str = "") -> dict[str, Any]:
    """Process S3 event records posted directly (MinIO webhook, Lambda S3 trigger).

    Returns ``{"processed": [...], "failed": [keys]}``; the caller answers non-2xx when ``failed`` is not
    empty so the sender retries. Raises :class:`MalformedEventError` for a body that is not S3 records.
    """
    service = service or _default_service()
    objects, is_test = parse_s3_document(document)
    processed: list[dict[str, Any]] = []
    failed: list[str] = []
    if is_test:
        return {"processed": processed, "failed": failed, "test_event": True}
    for obj in objects:
        try:
            result = service.process(obj, request_id=request_id)
            processed.append({"key": obj.key, "outcome": str(result.outcome), "pseudonym": result.pseudonym,
                              "reason": result.reason})
        except RetryableError as exc:
            logger.warning("retryable failure", extra={"tmi": {"object_key": obj.key, "error": str(exc)[:200],
                                                                "request_id": request_id}})
            failed.append(obj.key)
    return {"processed": processed, "failed": failed}


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: SQS batches → partial batch response; direct S3 records → same service."""
    request_id = str(getattr(context, "aws_request_id", "") or "")
    service = _default_service()
    records = event.get("Records") or []
    if records and isinstance(records[0], Mapping) and "s3" in records[0]:
        outcome = handle_s3_document(event, service, request_id)
        if outcome["failed"]:
            raise RetryableError(f"{len(outcome['failed'])} object(s) failed; the S3 trigger will retry")
        return outcome
    response, _ = handle_sqs_event(event, service)
    return response


__all__ = ["MalformedEventError", "S3ObjectRef", "handle_s3_document", "handle_sqs_event", "handler"]
