"""``adapters.stack.process.ManagedProcess``: children it started are reaped however they end, so none is
left as a zombie (or reported "still running" when the test process exits)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from adapters.stack import process


def _managed(tmp_path: Path) -> process.ManagedProcess:
    return process.ManagedProcess("sleeper", tmp_path / "sleeper.pid", tmp_path / "sleeper.log")


def _sleeper(managed: process.ManagedProcess) -> int:
    return managed.start([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))


def test_stop_reaps_the_child(tmp_path: Path) -> None:
    managed = _managed(tmp_path)
    pid = _sleeper(managed)
    assert managed.alive() and pid in process._CHILDREN
    assert managed.stop(timeout_s=10)
    assert not managed.alive()
    assert pid not in process._CHILDREN
    assert not Path(f"/proc/{pid}").exists()  # no zombie left


def test_a_killed_child_is_reaped_when_noticed(tmp_path: Path) -> None:
    managed = _managed(tmp_path)
    pid = _sleeper(managed)
    assert managed.signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while managed.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not managed.alive()  # noticing it gone reaps it
    assert pid not in process._CHILDREN
    assert not Path(f"/proc/{pid}").exists()
