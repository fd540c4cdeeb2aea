"""Reconciler: every intake object without a finished record is re-enqueued as a synthetic S3 event.

A notification can be lost (endpoint restarted, misconfigured target, message expired in the DLQ); the
intake bucket is the source of truth. ``reconcile`` lists it, subtracts the objects the pipeline finished
(COMPLETED or QUARANTINED in ``pipeline_objects``) and sends one S3 event per remaining object older than
``min_age_s`` to the intake queue, exactly as S3 would have. Re-enqueuing something in flight is harmless:
the claim makes processing idempotent.

The intake bucket keeps every instance (republish reads it), so it only grows. A scheduled run therefore
looks back ``lookback_days`` only: intake keys are ``<prefix><yyyy>/<mm>/<dd>/<id>.dcm`` (the UTC day the
intake Orthanc received the instance), so it lists just those day folders — its cost follows the recent
volume, not the archive's size. ``lookback_days=None`` sweeps the whole prefix (``tmi reconcile --all``:
after an outage longer than the look-back, or for keys outside the day layout). Either way the finished
records are looked up one listed page (≤ 1,000 keys) at a time, so memory does not grow with the bucket.

A full sweep of a large archive can outlast its runner (a Lambda has at most 15 minutes), so it is
resumable: ``should_stop`` is asked after every listed page, and when it says stop the run ends there with
``next_start_after`` set to the last key it dealt with. The next run passes that key as ``start_after``
(S3 lists keys in UTF-8 binary order, and ``StartAfter`` continues after it), so no object is skipped and
the keys already dealt with are not listed again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from functions.events import s3_event_document

logger = logging.getLogger(__name__)

KEYS_SHOWN = 1000


@dataclass
class ReconcileReport:
    """What the reconciler saw and did (object keys carry no PHI)."""

    listed: int = 0
    finished: int = 0
    too_young: int = 0
    enqueued: list[str] = field(default_factory=list)
    next_start_after: str | None = None  # set when a full sweep stopped early: resume after this key

    @property
    def complete(self) -> bool:
        """False when a full sweep stopped early (``next_start_after`` says where to continue)."""
        return self.next_start_after is None

    def to_dict(self) -> dict[str, Any]:
        """JSON view; ``keys`` names the first :data:`KEYS_SHOWN` re-enqueued objects (a full sweep after a
        long outage may re-enqueue far more, and a Lambda response is capped at 6 MB)."""
        return {"listed": self.listed, "finished": self.finished, "too_young": self.too_young,
                "enqueued": len(self.enqueued), "keys": self.enqueued[:KEYS_SHOWN],
                "complete": self.complete, "next_start_after": self.next_start_after}


def day_prefixes(prefix: str, lookback_days: int, today: date) -> list[str]:
    """The intake day folders from ``today`` back ``lookback_days`` days (newest first)."""
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"  # as the intake writer does
    return [f"{prefix}{today - timedelta(days=n):%Y/%m/%d}/" for n in range(lookback_days + 1)]


def reconcile(s3: Any, sqs: Any, claims: Any, *, bucket: str, prefix: str, queue_name: str,
              min_age_s: float = 60.0, dry_run: bool = False, lookback_days: int | None = None,
              now: datetime | None = None, start_after: str | None = None,
              should_stop: Callable[[], bool] | None = None) -> ReconcileReport:
    """Re-enqueue unfinished intake objects; see the module docstring.

    ``start_after`` and ``should_stop`` apply to a full sweep (``lookback_days=None``) only: a windowed
    run lists a few day folders and always runs to the end.
    """
    if start_after is not None and lookback_days is not None:
        raise ValueError("start_after resumes a full sweep (lookback_days=None): give it with `tmi "
                         "reconcile --all`, or with {\"all\": true} in the reconcile function's event")
    queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=min_age_s)
    prefixes = [prefix] if lookback_days is None else day_prefixes(prefix, lookback_days, now.date())
    resume = {"StartAfter": start_after} if start_after else {}
    report = ReconcileReport()
    batch: list[dict[str, str]] = []

    def flush() -> None:
        if batch and not dry_run:
            sqs.send_message_batch(QueueUrl=queue_url, Entries=list(batch))
        batch.clear()

    paginator = s3.get_paginator("list_objects_v2")
    pages = (page for folder in prefixes
             for page in paginator.paginate(Bucket=bucket, Prefix=folder, **resume))
    for page in pages:
        contents = page.get("Contents", [])
        finished = claims.finished_among(bucket, [obj["Key"] for obj in contents]) if contents else set()
        for obj in contents:
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
        if contents and lookback_days is None and should_stop is not None and should_stop():
            report.next_start_after = contents[-1]["Key"]
            break
    flush()
    scope = "all" if lookback_days is None else f"{lookback_days} day(s)"
    logger.info("reconcile done", extra={"tmi": {"scope": scope, **{k: v for k, v in report.to_dict().items()
                                                                     if k != "keys"}}})
    return report
