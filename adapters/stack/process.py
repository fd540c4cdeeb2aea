"""Start and stop one background process with a PID file and a log file (no shell, no daemon tool).

A PID file records ``pid`` and the process start time read from ``/proc``, so a stale file whose PID was
reused by another program is never mistaken for ours and never signalled.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Popen handles of the children this process started: kept so they are reaped (waited for) when stopped
# here, and never garbage-collected while running (which would only warn; the children live on by design).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    state = fields[0] if fields else "?"
    if state == "Z":  # a zombie is not running
        return None
    return fields[19] if len(fields) > 19 else None


@dataclass(frozen=True)
class ManagedProcess:
    """One named process: its PID file and log file live under the stack's state and log folders."""

    name: str
    pid_file: Path
    log_file: Path

    def read_pid(self) -> int | None:
        """The recorded PID when that very process still runs, else None."""
        try:
            record = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        pid = int(record.get("pid", 0))
        if pid <= 0:
            return None
        if _start_time(pid) != record.get("start"):
            _collect(pid)  # our child that exited (killed, crashed, stopped): reap it now
            return None
        return pid

    def alive(self) -> bool:
        """True when the recorded process runs."""
        return self.read_pid() is not None

    def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> int:
        """Start ``argv`` in its own session, output appended to the log file; record its PID."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv), env=dict(env), cwd=str(cwd) if cwd else None, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        start = None
        for _ in range(50):
            start = _start_time(proc.pid)
            if start:
                break
            time.sleep(0.01)
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "start": start, "argv": list(argv)}))
        logger.info("started %s (pid %s)", self.name, proc.pid)
        return proc.pid

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to the recorded process; False when it is not running."""
        pid = self.read_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout_s: float = 15.0) -> bool:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Returns True when something was stopped."""
        pid = self.read_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.read_pid() is not None:
            _reap(pid)
            time.sleep(0.1)
        if self.read_pid() is not None:
            logger.warning("%s did not stop in %.0fs; killing it", self.name, timeout_s)
            os.kill(pid, signal.SIGKILL)
            for _ in range(50):
                _reap(pid)
                if self.read_pid() is None:
                    break
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True


def _collect(pid: int) -> None:
    """Reap ``pid`` through its Popen handle if this process started it and it has exited (a zombie
    otherwise lingers until this process ends, and Python warns "subprocess … is still running")."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our child (so it does not linger as a zombie)."""
    if pid in _CHILDREN:
        _collect(pid)
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
