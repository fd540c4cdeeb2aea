"""The research adapter's STOW-RS request: exact multipart bytes, a Content-Length, and large files
streamed from disk (never held in memory). A small HTTP server on 127.0.0.1 stands in for Orthanc."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from adapters.pipeline import research
from adapters.pipeline.research import ResearchOrthanc
from tmi.errors import RetryableError


class _Recorder(BaseHTTPRequestHandler):
    """Reads the body in chunks (so the test process's memory shows the client's use, not ours)."""

    requests: ClassVar[list[dict[str, Any]]] = []
    answer: ClassVar[dict[str, Any]] = {}

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "-1"))
        digest, head, tail, remaining = hashlib.sha256(), b"", b"", length
        while remaining > 0:
            block = self.rfile.read(min(65536, remaining))
            if not block:
                break
            if len(head) < 200:
                head += block[:200 - len(head)]
            tail = (tail + block)[-200:]
            digest.update(block)
            remaining -= len(block)
        _Recorder.requests.append({"path": self.path, "headers": dict(self.headers), "length": length,
                                   "received": length - remaining, "sha256": digest.hexdigest(),
                                   "head": head, "tail": tail})
        payload = json.dumps(_Recorder.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def orthanc() -> Iterator[ResearchOrthanc]:
    _Recorder.requests = []
    _Recorder.answer = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ResearchOrthanc(f"http://127.0.0.1:{server.server_address[1]}", "pipeline", "secret")
    finally:
        server.shutdown()
        server.server_close()


def _expected(request: dict[str, Any], data: bytes) -> bytes:
    content_type = request["headers"]["Content-Type"]
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary="')
    boundary = content_type.split('boundary="')[1].rstrip('"')
    return (f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
            + f"\r\n--{boundary}--".encode())


@pytest.mark.parametrize("stream_above", [research.STREAM_ABOVE, 1000])
def test_stow_body_is_one_part_with_the_file_bytes(
    orthanc: ResearchOrthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream_above: int
) -> None:
    """Buffered (small) and streamed (large) bodies are the same bytes, sent with a Content-Length."""
    monkeypatch.setattr(research, "STREAM_ABOVE", stream_above)
    data = os.urandom(200_000)
    path = tmp_path / "instance.dcm"
    path.write_bytes(data)
    orthanc.store(str(path))
    (request,) = _Recorder.requests
    expected = _expected(request, data)
    assert request["path"] == "/dicom-web/studies"
    assert "chunked" not in request["headers"].get("Transfer-Encoding", "")
    assert request["length"] == request["received"] == len(expected)
    assert request["sha256"] == hashlib.sha256(expected).hexdigest()


def test_large_stow_is_streamed_from_disk(
    orthanc: ResearchOrthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file above the threshold never sits in memory: the client's peak allocation stays far below its
    size (the buffered path would hold it twice: the read and the joined body)."""
    monkeypatch.setattr(research, "STREAM_ABOVE", 1024 * 1024)
    size = 24 * 1024 * 1024
    path = tmp_path / "tomo.dcm"
    with path.open("wb") as handle:
        for _ in range(size // (1024 * 1024)):
            handle.write(os.urandom(1024 * 1024))
    orthanc.store(str(path))  # warm-up: the session and its connection pool exist before measuring
    tracemalloc.start()
    try:
        orthanc.store(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r["received"] for r in _Recorder.requests] == [r["length"] for r in _Recorder.requests]
    assert _Recorder.requests[-1]["length"] > size
    assert peak < 4 * 1024 * 1024, peak


def test_refused_instance_is_retryable(orthanc: ResearchOrthanc, tmp_path: Path) -> None:
    """A FailedSOPSequence in Orthanc's answer is an error the queue retries, with the reason code."""
    _Recorder.answer = {"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [272]}}]}}
    path = tmp_path / "instance.dcm"
    path.write_bytes(b"DICM")
    with pytest.raises(RetryableError, match="272"):
        orthanc.store(str(path))
