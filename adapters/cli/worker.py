"""`tmi worker`: the local event-source mapping (what AWS Lambda's SQS trigger does, as one process).

It long-polls the intake queue, hands each batch to ``functions.intake_handler`` as an SQS-shaped event,
deletes the messages that succeeded and leaves the failures alone: they reappear after the queue's
visibility timeout and move to the dead-letter queue after ``maxReceiveCount`` receives. Between polls it
drains the crosswalk's republish work items (``functions.republish_handler``). SIGTERM/SIGINT finish the
batch in hand and exit cleanly; a SIGKILL loses nothing (unacknowledged messages come back, claims expire).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RECONCILE_LOCK = 0x746D69_7265  # pg advisory lock key ("tmi" "re"): one reconciling worker at a time


def register(subparsers: Any) -> None:
    """Add ``tmi worker``, ``tmi reconcile`` and ``tmi republish``."""
    parser = subparsers.add_parser("worker", help="poll the intake queue and run the pipeline (local runner)")
    _arguments(parser)
    parser.set_defaults(func=run)
    rec = subparsers.add_parser("reconcile", help="re-enqueue intake objects that have no finished record")
    rec.add_argument("--min-age-s", type=float, default=60.0,
                     help="skip objects younger than this (their notification may still be in flight)")
    rec.add_argument("--all", dest="sweep_all", action="store_true",
                     help="sweep the whole intake prefix, not only the day folders of the last "
                          "TMI_PIPELINE_RECONCILE_LOOKBACK_DAYS days (after a longer outage, or for keys "
                          "outside the day layout)")
    rec.add_argument("--start-after", metavar="KEY", default=None,
                     help="with --all: continue a sweep that stopped early, after this intake key (the "
                          "'next_start_after' it reported)")
    rec.add_argument("--max-seconds", type=float, default=None,
                     help="with --all: stop after the listed page (1,000 keys) on which this much time has "
                          "passed, and report where to continue")
    rec.add_argument("--dry-run", action="store_true", help="list, do not enqueue")
    rec.add_argument("--json", action="store_true", help="print the report as JSON")
    rec.set_defaults(func=run_reconcile)
    rep = subparsers.add_parser("republish", help="process pending crosswalk republish work items now")
    rep.set_defaults(func=run_republish)


def run_reconcile(args: argparse.Namespace) -> int:
    """Entry point of ``tmi reconcile``."""
    import json
    import shlex

    from adapters.pipeline.wiring import build_context
    from functions.reconcile_handler import run

    if (args.start_after or args.max_seconds is not None) and not args.sweep_all:
        print("tmi reconcile: --start-after and --max-seconds go with --all", file=sys.stderr)
        return 2
    should_stop = None
    if args.max_seconds is not None:
        deadline = time.monotonic() + args.max_seconds
        should_stop = lambda: time.monotonic() >= deadline  # noqa: E731 - a one-line predicate
    ctx = build_context()
    try:
        report = run(ctx, args.min_age_s, dry_run=args.dry_run, sweep_all=args.sweep_all,
                     start_after=args.start_after, should_stop=should_stop)
    finally:
        ctx.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        verb = "would re-enqueue" if args.dry_run else "re-enqueued"
        print(f"listed {report['listed']}, finished {report['finished']}, too young {report['too_young']}, "
              f"{verb} {report['enqueued']}")
    if not report["complete"]:
        print(f"stopped early: continue with tmi reconcile --all --start-after "
              f"{shlex.quote(report['next_start_after'])}",
              file=sys.stderr)
    return 0


def run_republish(args: argparse.Namespace) -> int:
    """Entry point of ``tmi republish``."""
    from adapters.pipeline.republish import RepublishService
    from adapters.pipeline.wiring import build_context

    ctx = build_context()
    try:
        outcomes = RepublishService(ctx).drain()
    finally:
        ctx.close()
    for outcome in outcomes:
        reason = f" ({outcome.reason})" if outcome.reason else ""
        print(f"item {outcome.item_id}: {outcome.outcome} {outcome.old_key or '-'} -> "
              f"{outcome.new_key or '-'}{reason}")
    print(f"{len(outcomes)} republish item(s) handled")
    return 1 if any(o.outcome == "failed" for o in outcomes) else 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="worker", help="name used in logs and the heartbeat file")
    parser.add_argument("--threads", type=int, default=None, help="messages processed concurrently")
    parser.add_argument("--once", action="store_true", help="process what is queued now, then exit")
    parser.add_argument("--max-idle-s", type=float, default=None, help="exit after this long with no work")


def to_lambda_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """Shape SQS ``ReceiveMessage`` results like the event Lambda's SQS trigger delivers."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m.get("Body", ""),
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": dict(m.get("MessageAttributes", {})),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class Worker:
    """The poll → handle → delete loop; see the module docstring."""

    def __init__(self, name: str, threads: int | None = None) -> None:
        from adapters.pipeline.wiring import build_context, build_intake_service

        self.name = name
        self.ctx = build_context()
        self.service = build_intake_service(self.ctx)
        self.threads = threads or self.ctx.pipeline.threads
        self.stop = threading.Event()
        self.queue_url = self.queue_arn = ""  # looked up by connect_queue()
        self.heartbeat = Path(self.ctx.settings.run_dir) / "stack" / f"{name}.heartbeat"
        self._last_republish = 0.0
        self._last_reconcile = time.monotonic()  # the first run one interval after start

    def connect_queue(self, retry_s: float = 2.0) -> bool:
        """Look the intake queue up, retrying every ``retry_s`` while SQS cannot answer; False when stopped
        first. A worker started while its S3/SQS endpoint is down (a NAS rebooting, a restart of moto)
        waits for it, logging why, instead of exiting: nothing would start it again."""
        queue = self.ctx.settings.intake_queue
        while not self.stop.is_set():
            try:
                sqs = self.ctx.sqs
                url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
            except Exception as exc:  # noqa: BLE001 - endpoint down, queue not created yet: wait and retry
                logger.warning("intake queue not reachable; retrying", extra={"tmi": {
                    "worker": self.name, "queue": queue, "error": type(exc).__name__}})
                self.stop.wait(retry_s)
                continue
            self.queue_url, self.queue_arn = url, attributes["QueueArn"]
            return True
        return False

    def receive(self, wait_s: int, limit: int | None = None) -> list[dict[str, Any]]:
        """One ``ReceiveMessage`` call (up to ``limit``, default ``batch_size``, messages; long poll
        ``wait_s``)."""
        response = self.ctx.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=limit or self._batch_size(),
            WaitTimeSeconds=wait_s, AttributeNames=["All"], MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def _batch_size(self) -> int:
        return max(1, min(10, self.ctx.pipeline.batch_size))

    def receive_batch(self, wait_s: int) -> list[dict[str, Any]]:
        """``receive``, then — when the batch is not full and ``batch_window_s`` > 0 — wait the window and
        top the batch up with one short poll (Lambda's batching window)."""
        messages = self.receive(wait_s)
        missing = self._batch_size() - len(messages)
        window = self.ctx.pipeline.batch_window_s
        if messages and missing > 0 and window > 0 and not self.stop.wait(window):
            messages += self.receive(0, limit=missing)
        return messages

    def handle_batch(self, messages: list[dict[str, Any]], threads: int = 1) -> None:
        """Invoke the handler with one SQS-shaped batch; delete the messages it did not report as failed."""
        from functions.intake_handler import handle_sqs_event

        event = to_lambda_event(messages, self.queue_arn, self.ctx.settings.aws_region)
        result, _ = handle_sqs_event(event, self.service, threads=threads)
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start:start + 10]
            self.ctx.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        logger.info("batch handled", extra={"tmi": {"worker": self.name, "received": len(messages),
                                                    "acknowledged": len(done), "failed": len(failed)}})

    def drain_republish(self) -> int:
        """Process pending republish work items (at most every ``republish_interval_s``)."""
        now = time.monotonic()
        if now - self._last_republish < self.ctx.pipeline.republish_interval_s:
            return 0
        self._last_republish = now
        from functions.republish_handler import drain

        return drain(self.ctx)

    def reconcile_now(self) -> int:
        """Run the reconciler when it is due and no other worker holds the election lock; return how many
        objects it re-enqueued."""
        interval = self.ctx.pipeline.reconcile_interval_s
        now = time.monotonic()
        if interval <= 0 or now - self._last_reconcile < interval:
            return 0
        self._last_reconcile = now
        from functions.reconcile_handler import run

        with self.ctx.pool.connection() as conn:
            conn.autocommit = True
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (RECONCILE_LOCK,)).fetchone()
            if not (got and got[0]):
                return 0  # another worker is reconciling
            try:
                report = run(self.ctx)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (RECONCILE_LOCK,))
        return int(report["enqueued"])

    def background(self) -> None:
        """What a worker does between batches: republish work items, then the reconciler when due (each
        failure is logged; the next round tries again)."""
        for step in (self.drain_republish, self.reconcile_now):
            try:
                step()
            except Exception:
                logger.exception("background step failed", extra={"tmi": {"worker": self.name,
                                                                          "step": step.__name__}})

    def run(self, once: bool = False, max_idle_s: float | None = None) -> int:
        """Loop until stopped (or, with ``once``, until the queue is empty).

        Like Lambda's SQS event-source mapping with a concurrency of ``threads``: up to ``threads`` handler
        invocations run at once, each on its own batch; a new batch is received as soon as one finishes
        (no waiting for the slowest message of a big batch). Republish items are drained in between.
        """
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        if not self.queue_url and not self.connect_queue():
            self.ctx.close()
            return 0
        idle_since = time.monotonic()
        logger.info("worker started", extra={"tmi": {"worker": self.name, "queue": self.queue_url,
                                                     "threads": self.threads}})
        inflight: set[Future[Any]] = set()
        between_batches: Future[Any] | None = None
        with ThreadPoolExecutor(max_workers=self.threads + 1, thread_name_prefix=self.name) as pool:
            while not self.stop.is_set():
                self.heartbeat.parent.mkdir(parents=True, exist_ok=True)
                self.heartbeat.touch()
                for future in [f for f in inflight if f.done()]:
                    inflight.discard(future)
                    if future.exception() is not None:
                        logger.error("batch failed", extra={"tmi": {
                            "worker": self.name, "error": type(future.exception()).__name__}})
                try:
                    if between_batches is None or between_batches.done():
                        between_batches = pool.submit(self.background)
                    if len(inflight) >= self.threads:
                        wait(inflight, timeout=1.0, return_when=FIRST_COMPLETED)
                        continue
                    # Always a long poll: an empty queue costs one request per wait_time_s (moto's
                    # ReceiveMessage walks the whole queue), and a message arriving wakes it at once.
                    messages = self.receive_batch(self.ctx.pipeline.wait_time_s)
                except Exception:
                    logger.exception("poll failed; retrying", extra={"tmi": {"worker": self.name}})
                    self.stop.wait(2.0)
                    continue
                if messages:
                    inflight.add(pool.submit(self.handle_batch, messages))
                    idle_since = time.monotonic()
                elif inflight:
                    continue
                elif once or (max_idle_s is not None and time.monotonic() - idle_since > max_idle_s):
                    break
            wait(inflight)  # SIGTERM: finish the batches in hand
        logger.info("worker stopped", extra={"tmi": {"worker": self.name}})
        self.ctx.close()
        return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tmi worker``."""
    from adapters.pipeline.jsonlog import configure

    configure(logging.INFO)
    worker = start_worker(args.name, args.threads)

    def _stop(signum: int, _frame: object) -> None:
        logger.info("signal received; finishing the batch in hand", extra={"tmi": {"signal": signum}})
        worker.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return worker.run(once=args.once, max_idle_s=args.max_idle_s)


def start_worker(name: str, threads: int | None = None, retry_s: float = 5.0) -> Worker:
    """A :class:`Worker`, waiting (every ``retry_s``, with a warning) while PostgreSQL cannot be reached.

    A worker started while its database is down (restarting, failing over) used to exit after the
    pool's 30 s timeout, and nothing starts a worker again. Other errors (settings, the de-id key) are
    not waited for: they need a person, so the worker exits with them.
    """
    import psycopg
    from psycopg_pool import PoolTimeout

    while True:
        try:
            return Worker(name, threads)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            logger.warning("database not reachable; retrying", extra={"tmi": {
                "worker": name, "error": type(exc).__name__, "retry_s": retry_s}})
            time.sleep(retry_s)


def main(argv: list[str] | None = None) -> int:
    """``python -m adapters.cli.worker`` (how ``tmi stack up`` starts workers)."""
    parser = argparse.ArgumentParser(prog="tmi worker")
    _arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
