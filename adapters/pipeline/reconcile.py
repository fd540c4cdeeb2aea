"""Reconciler: every intake object without a finished record is re-enqueued as a synthetic S3 event.

A notification can be lost (endpoint restarted, misconfigured target, message expired in the DLQ); the
intake bucket is the source of truth. ``reconcile`` lists it, subtracts the objects the pipeline finished
(COMPLETED or QUARANTINED in ``pipeline_objects``) and sends one S3 event per remaining object older than
``min_age_s`` to the intake queue, exactly as S3 would have. Re-enqueuing something in flight is harmless:
the claim makes processing idempotent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.events import s3_event_document

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What the reconciler saw and did (object keys carry no PHI)."""

    listed: int = 0
    finished: int = 0
    too_young: int = 0
    enqueued: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {"listed": self.listed, "finished": self.finished, "too_young": self.too_young,
                "enqueued": len(self.enqueued), "keys": self.enqueued}


def reconcile(s3: Any, sqs: Any, claims: Any, *, bucket: str, prefix: str, queue_name: str,
              min_age_s: float = 60.0, dry_run: bool = False) -> ReconcileReport:
    """Re-enqueue unfinished intake objects; see the module docstring."""
    finished = claims.finished_keys(bucket)
    queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    cutoff = datetime.now(UTC) - timedelta(seconds=min_age_s)
    report = ReconcileReport()
    batch: list[dict[str, str]] = []

    def flush() -> None:
        if batch and not dry_run:
            sqs.send_message_batch(QueueUrl=queue_url, Entries=list(batch))
        batch.clear()

    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            report.listed += 1
            key = obj["Key"]
            if key in finished:
                report.finished += 1
                continue
            if obj["LastModified"] > cutoff:
                report.too_young += 1
                continue
            document = s3_event_document(bucket, key, etag=str(obj.get("ETag", "")).strip('"'),
                                         size=int(obj.get("Size", 0)))
            batch.append({"Id": str(len(batch)), "MessageBody": json.dumps(document)})
            report.enqueued.append(key)
            if len(batch) == 10:
                flush()
    flush()
    logger.info("reconcile done", extra={"tmi": {k: v for k, v in report.to_dict().items() if k != "keys"}})
    return report
