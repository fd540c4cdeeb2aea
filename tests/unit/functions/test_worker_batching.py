"""The worker's batching window (Lambda's MaximumBatchingWindowInSeconds), against an in-process fake
queue: a short first receive is topped up once after the window; a full one or an empty one is not."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from adapters.cli.worker import Worker
from adapters.pipeline.config import PipelineSettings


class FakeSqs:
    def __init__(self, batches: list[int]) -> None:
        self.batches = batches
        self.calls: list[dict[str, Any]] = []
        self.next_id = 0

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        count = min(self.batches.pop(0) if self.batches else 0, kwargs["MaxNumberOfMessages"])
        messages = [{"MessageId": str(self.next_id + i)} for i in range(count)]
        self.next_id += count
        return {"Messages": messages} if messages else {}


def _worker(sqs: FakeSqs, window: float) -> Worker:
    worker = Worker.__new__(Worker)
    worker.ctx = SimpleNamespace(  # type: ignore[assignment]
        sqs=sqs, pipeline=PipelineSettings(batch_size=10, batch_window_s=window))
    worker.queue_url = "queue"
    worker.stop = threading.Event()
    return worker


def test_short_batch_is_topped_up_once_after_the_window() -> None:
    sqs = FakeSqs([2, 5])
    messages = _worker(sqs, 0.01).receive_batch(1)
    assert [m["MessageId"] for m in messages] == [str(i) for i in range(7)]
    assert [c["MaxNumberOfMessages"] for c in sqs.calls] == [10, 8]
    assert sqs.calls[1]["WaitTimeSeconds"] == 0  # the top-up does not long-poll


def test_full_or_empty_batches_and_a_zero_window_are_not_topped_up() -> None:
    for batches, window in (([10, 5], 0.01), ([0, 5], 0.01), ([2, 5], 0.0)):
        sqs = FakeSqs(list(batches))
        _worker(sqs, window).receive_batch(1)
        assert len(sqs.calls) == 1, (batches, window)


def test_a_stop_during_the_window_returns_what_it_has() -> None:
    sqs = FakeSqs([2, 5])
    worker = _worker(sqs, 5.0)
    worker.stop.set()
    assert len(worker.receive_batch(1)) == 2 and len(sqs.calls) == 1
