"""moto's S3 + SQS server for the local stack (``python -m adapters.stack.moto_server -H HOST -p PORT``).

The same moto application ``moto_server`` serves (same backends, same responses, same in-memory state),
without the per-request costs that made the emulator the largest CPU consumer (and a latency source) of
the local pipeline (measured with py-spy and timed calls during ``python -m bench.pipeline``):

* moto's dispatcher maps a request's host to a backend by listing moto's package folder (``os.listdir`` +
  one ``stat`` per entry) and then trying its URL patterns one by one, on *every* request. The mapping
  only depends on the host string and the static backend index, so it is memoised here;
* werkzeug logs every request line to the log file (kept for errors: 4xx/5xx are still logged);
* werkzeug's development server closes the connection after every response (``Connection: close``), so
  every S3/SQS call paid a TCP connect, a new server thread and a new client connection (400 requests
  left 400 sockets in TIME-WAIT). Here a request whose body length is known keeps its connection: the
  handler gives the application a reader bounded by ``Content-Length`` (werkzeug's post-response drain then
  stops at the body's end instead of swallowing the next request) and drains what the application left
  unread. Chunked uploads, clients asking for ``close`` and failed requests still close;
* on a kept-alive connection the response head and body leave in separate writes, and with Nagle's
  algorithm on the body waited for the client's delayed ACK of the head: 48 ms per S3 GET/PUT on
  loopback; ``TCP_NODELAY`` is set on every accepted connection;
* SQS ``ReceiveMessage`` recomputes all queue attributes (counting every message of the queue) for each
  message it returns, only to read the retention period; here the queue's retention attribute is read
  directly (same check, same result). ``SendMessage`` (every S3 notification) did the same to read
  ``ContentBasedDeduplication``, an attribute only FIFO queues have: for a standard queue it is skipped;
* moto drops every exception of its S3 → SQS notification silently; here it is logged and retried once;
* moto's SQS operations change a queue's messages from concurrent request threads without a lock, which
  lost a notification now and then and delivered some messages twice at once; here they hold the queue's
  lock (:func:`patch_sqs_queue_locking`; the tests' in-process ``ThreadedMotoServer`` applies it too).

Apart from the lost and doubled messages, nothing here changes what a client sees; it is the local
emulator only (AWS, LocalStack or MinIO are used unchanged when ``AWS_ENDPOINT_URL*`` points at them).
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
import sys
import threading
from typing import Any


def _lean_dispatcher() -> Any:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    class LeanDispatcher(DomainDispatcherApplication):
        """Memoises moto's host → backend lookup (a pure function of the host)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._backend_for_host: dict[str | None, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            try:
                return self._backend_for_host[host]
            except KeyError:
                backend = super().get_backend_for_host(host)
                if len(self._backend_for_host) < 1024:
                    self._backend_for_host[host] = backend
                return backend

    app = LeanDispatcher(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto_server sets it
    return app


class _Body(io.RawIOBase):
    """The request body: at most ``length`` bytes of the connection's stream, then end of file."""

    def __init__(self, stream: Any, length: int) -> None:
        super().__init__()
        self._stream = stream
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.remaining <= 0:
            return 0
        view = memoryview(buffer)[:self.remaining]
        count = self._stream.readinto(view) or 0
        self.remaining -= count
        if count == 0:
            self.remaining = 0  # the client went away mid-body
        return count

    def readline(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        limit = self.remaining if size is None or size < 0 else min(size, self.remaining)
        line = self._stream.readline(limit)
        self.remaining = self.remaining - len(line) if line else 0
        return bytes(line)

    def drain(self) -> bool:
        """Read what the application left unread; False when the stream ended early."""
        while self.remaining > 0:
            if not self.read(min(self.remaining, 1 << 20)):
                return False
        return True


_FAILED = "tmi.request_failed"


def _flag_failures(app: Any) -> Any:
    """Marks the WSGI environ of a request whose application raised (its connection is then closed)."""
    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return list(app(environ, start_response))
        except BaseException:
            environ[_FAILED] = True
            raise

    return wrapped


def _quiet_handler() -> Any:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietHandler(MotoRequestHandler):
        """Logs failed requests only (werkzeug logs every request otherwise) and keeps connections alive
        for requests with a known body length (see the module docstring)."""

        _keep_alive = False
        _environ: dict[str, Any] | None = None
        # On a kept-alive connection the response head and body leave in separate writes; with Nagle on,
        # the body waits for the client's delayed ACK of the head (~40 ms per S3 GET/PUT on loopback).
        disable_nagle_algorithm = True

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if str(code)[:1] in ("4", "5"):
                super().log_request(code, size)

        def make_environ(self) -> Any:
            environ = super().make_environ()
            self._environ = environ
            return environ

        def send_header(self, keyword: str, value: str) -> None:
            if self._keep_alive and keyword.lower() == "connection" and value.lower() == "close":
                return  # werkzeug's unconditional close: this request's body is bounded, keep the connection
            super().send_header(keyword, value)

        def run_wsgi(self) -> None:
            chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if chunked or length < 0 or self.close_connection or self.request_version != "HTTP/1.1":
                super().run_wsgi()  # werkzeug's behaviour: answer, then close
                return
            raw, body = self.rfile, _Body(self.rfile, length)
            self.rfile, self._keep_alive, self._environ = body, True, None  # type: ignore[assignment]
            try:
                super().run_wsgi()
            finally:
                self.rfile, self._keep_alive = raw, False
            if not body.drain() or (self._environ is not None and self._environ.get(_FAILED)):
                self.close_connection = True

    return QuietHandler


def _patch_notification_errors() -> None:
    """moto's S3 → SQS notification catches and drops every exception ("async in AWS"): a notification
    lost without a trace. Here a failure is logged with its traceback and tried once more; the reconciler
    (``tmi reconcile``) remains the safety net for anything still lost."""
    import json

    from moto.s3 import notifications

    log = logging.getLogger("tmi.moto")

    def send(account_id: str, event_body: Any, queue_name: str, region_name: str) -> None:
        from moto.sqs.models import sqs_backends

        for attempt in (1, 2):
            try:
                sqs_backends[account_id][region_name].send_message(
                    queue_name=queue_name, message_body=json.dumps(event_body))
                return
            except Exception:
                log.exception("S3 notification to queue %s failed (attempt %d of 2)", queue_name, attempt)

    notifications._send_sqs_message = send  # type: ignore[attr-defined]


def _patch_sqs_retention_check() -> None:
    """``SQSBackend.is_message_valid_based_on_retention_period`` without recomputing every attribute."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_valid(self: Any, queue_name: str, message: Any) -> bool:
        queue = self.get_queue(queue_name)
        retention_period = int(queue.message_retention_period)
        return bool(retention_period + message.sent_timestamp / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = is_valid  # type: ignore[method-assign]


def _patch_sqs_send_attributes() -> None:
    """``SQSBackend.send_message`` reads ``queue.attributes`` (every attribute, counting the whole queue) for
    ``ContentBasedDeduplication``, which only FIFO queues carry: standard queues skip that computation."""
    from moto.sqs.models import Queue, SQSBackend

    original = SQSBackend.send_message
    attributes: Any = Queue.__dict__["attributes"]  # the property object

    def send_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        if queue.fifo_queue:
            return original(self, queue_name, *args, **kwargs)
        _SKIP.active = True
        try:
            return original(self, queue_name, *args, **kwargs)
        finally:
            _SKIP.active = False

    def lean_attributes(self: Any) -> dict[str, Any]:
        if getattr(_SKIP, "active", False) and not self.fifo_queue:
            _SKIP.active = False  # one use: the dedup check at the top of send_message
            return {}
        return dict(attributes.fget(self))

    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    Queue.attributes = property(lean_attributes)  # type: ignore[method-assign, assignment]


_SKIP = threading.local()


def patch_sqs_queue_locking() -> None:
    """Make moto's SQS message operations atomic per queue.

    moto's request threads change a queue's messages without a lock. ``DeleteMessage`` builds a copy of
    the message list without the deleted message and then assigns it. With two deletes at once, the later
    assignment brings back the message the other one deleted (delivered again after the visibility
    timeout), and a message sent in between (an S3 notification) is dropped: the instance is in the intake
    bucket and nothing tells a worker (``python -m bench.pipeline`` lost 1 of 1,000 this way; the workers'
    reconciler recovers such an object only after ``reconcile_min_age_s``). Two concurrent
    ``ReceiveMessage`` calls can also both take one message (getmoto/moto#519). Here
    ``ReceiveMessage``, ``DeleteMessage``, ``ChangeMessageVisibility`` and ``PurgeQueue`` hold the queue's
    own lock (``Queue._messages_lock``, the ``Condition`` that moto's ``SendMessage`` and long polling
    already use). It is re-entrant, and a long poll waiting on it inside ``ReceiveMessage`` releases it,
    so senders are never held up by a waiting receiver. Applying it again changes nothing.
    """
    import functools

    from moto.sqs.models import Queue, SQSBackend

    if getattr(Queue.delete_message, "_tmi_locked", False):
        return

    def queue_locked(method: Any) -> Any:
        @functools.wraps(method)
        def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
            with self._messages_lock:
                return method(self, *args, **kwargs)

        locked._tmi_locked = True  # type: ignore[attr-defined]
        return locked

    def backend_locked(method: Any) -> Any:
        @functools.wraps(method)
        def locked(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
            with self.get_queue(queue_name)._messages_lock:
                return method(self, queue_name, *args, **kwargs)

        return locked

    Queue.delete_message = queue_locked(Queue.delete_message)  # type: ignore[method-assign]
    for name in ("receive_message", "change_message_visibility", "purge_queue"):
        setattr(SQSBackend, name, backend_locked(getattr(SQSBackend, name)))


def main(argv: list[str] | None = None) -> int:
    """Serve moto on ``-H``/``-p`` until SIGTERM/SIGINT."""
    import os

    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(prog="python -m adapters.stack.moto_server")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logging.basicConfig(level=logging.INFO)
    _patch_sqs_retention_check()
    _patch_sqs_send_attributes()
    _patch_notification_errors()
    patch_sqs_queue_locking()
    run_simple(args.host, args.port, _flag_failures(_lean_dispatcher()), threaded=True, use_reloader=False,
               request_handler=_quiet_handler())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
