"""The local stack's moto server (``python -m adapters.stack.moto_server``) under concurrent SQS traffic.

moto's own SQS backend lets request threads rebuild a queue's message list at the same time: a
``DeleteMessage`` running alongside another one brings back the message the other deleted (redelivered
after the visibility timeout), and a notification sent meanwhile can vanish. ``bench.pipeline`` lost an
instance's notification that way (1 of 1,000) and saw 8 messages delivered again. The server the stack
runs holds each queue's lock around those operations; this test drives it over HTTP the way two workers
and the intake bucket's notifications do.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
import requests

from tests.conftest import free_port
from tests.fixtures.s3 import FAKE_CREDENTIALS

pytestmark = pytest.mark.integration

BALLAST = 1500  # in-flight messages: each DeleteMessage walks all of them, which widens the race
NEW = 600  # messages sent while the ballast is being deleted
THREADS = 3


@pytest.fixture(scope="module")
def stack_moto() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapters.stack.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    assert proc.stderr is not None
                    raise RuntimeError(f"moto server did not start: {proc.stderr.read()!r}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def _sqs(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def _counts(sqs: Any, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_concurrent_deletes_and_sends_lose_nothing_and_bring_nothing_back(stack_moto: str) -> None:
    sqs = _sqs(stack_moto)
    url = sqs.create_queue(QueueName="race", Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
    for start in range(0, BALLAST, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": f"ballast-{i}"} for i in range(start, start + 10)])
    handles: list[str] = []
    while len(handles) < BALLAST:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        assert got, f"only {len(handles)} of {BALLAST} ballast messages received"
        handles.extend(m["ReceiptHandle"] for m in got)
    assert _counts(sqs, url) == (0, BALLAST)

    batches = [handles[i:i + 10] for i in range(0, BALLAST, 10)]
    bodies = [f"new-{i}" for i in range(NEW)]
    failures: list[Any] = []
    lock = threading.Lock()

    def delete(chunk: list[list[str]]) -> None:
        client = _sqs(stack_moto)
        for batch in chunk:
            result = client.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)])
            if result.get("Failed"):
                with lock:
                    failures.extend(result["Failed"])

    def send(chunk: list[str]) -> None:
        client = _sqs(stack_moto)
        for body in chunk:
            client.send_message(QueueUrl=url, MessageBody=body)

    with ThreadPoolExecutor(2 * THREADS) as pool:
        jobs = [pool.submit(delete, batches[i::THREADS]) for i in range(THREADS)]
        jobs += [pool.submit(send, bodies[i::THREADS]) for i in range(THREADS)]
        for job in jobs:
            job.result()
    assert failures == []

    visible, in_flight = _counts(sqs, url)
    # Every ballast message was deleted once: none may come back (it would be redelivered in 10 minutes),
    # and every message sent during the deletes is there.
    assert (in_flight, visible) == (0, NEW), (
        f"{in_flight} deleted messages are back in the queue; {NEW - visible} of {NEW} messages sent during "
        "the deletes are missing")
    received: list[str] = []
    while len(received) < NEW:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not got:
            break
        received.extend(m["Body"] for m in got)
    assert sorted(received) == sorted(bodies)
