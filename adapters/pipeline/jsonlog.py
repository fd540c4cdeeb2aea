"""Structured JSON logs for handlers and the worker: one JSON object per line, correlation keys only.

Callers pass correlation data as ``extra={"tmi": {...}}`` (object key, pseudonym, request id, outcome);
never PHI. :func:`configure` installs the formatter on the root logger (adapters call it, libraries don't).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    """Format a record as ``{"ts", "level", "logger", "msg", ...correlation keys}``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "tmi", None)
        if isinstance(extra, dict):
            payload.update({k: v for k, v in extra.items() if v is not None})
        if record.exc_info and record.exc_info[0] is not None:
            payload["error"] = record.exc_info[0].__name__
        return json.dumps(payload, default=str)


def configure(level: int = logging.INFO, stream: Any = None) -> None:
    """Send every log record to ``stream`` (stderr) as JSON lines, replacing existing handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "dicomweb_client", "httpx", "pydicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
