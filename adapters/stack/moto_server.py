"""moto's S3 + SQS server for the local stack (``python -m adapters.stack.moto_server -H HOST -p PORT``).

The same moto application ``moto_server`` serves (same backends, same responses, same in-memory state),
without three per-request costs that made the emulator the largest CPU consumer of the local pipeline
(measured with py-spy during ``python -m bench.pipeline``):

* moto's dispatcher maps a request's host to a backend by listing moto's package folder (``os.listdir`` +
  one ``stat`` per entry) and then trying its URL patterns one by one, on *every* request. The mapping
  only depends on the host string and the static backend index, so it is memoised here;
* werkzeug logs every request line to the log file (kept for errors: 4xx/5xx are still logged);
* SQS ``ReceiveMessage`` recomputes all queue attributes (counting every message of the queue) for each
  message it returns, only to read the retention period; here the queue's retention attribute is read
  directly (same check, same result).

Nothing here changes what a client sees; it is the local emulator only (AWS, LocalStack or MinIO are used
unchanged when ``AWS_ENDPOINT_URL*`` points at them).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
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
    app.debug = True  # as moto_server sets it
    return app


def _quiet_handler() -> Any:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietHandler(MotoRequestHandler):
        """Logs failed requests only (werkzeug logs every request otherwise)."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if str(code)[:1] in ("4", "5"):
                super().log_request(code, size)

    return QuietHandler


def _patch_sqs_retention_check() -> None:
    """``SQSBackend.is_message_valid_based_on_retention_period`` without recomputing every attribute."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_valid(self: Any, queue_name: str, message: Any) -> bool:
        queue = self.get_queue(queue_name)
        retention_period = int(queue.message_retention_period)
        return bool(retention_period + message.sent_timestamp / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = is_valid  # type: ignore[method-assign]


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
    run_simple(args.host, args.port, _lean_dispatcher(), threaded=True, use_reloader=False,
               request_handler=_quiet_handler())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
