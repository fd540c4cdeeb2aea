"""resolve() round trips, counted on the wire with the libpq protocol trace.

Latency on a shared host is noise; the number of times the client must stop and wait for the server
per resolve is not, and it is what the latency budget rests on. A round trip is a run of frontend (F)
messages followed by backend (B) messages: statements pipelined before waiting count once.
"""

from __future__ import annotations

import os
import re
import tempfile
from itertools import pairwise
from pathlib import Path

import pytest
from psycopg import pq

from adapters.db.crosswalk import CrosswalkService
from tmi.ports import PatientPHI

pytestmark = pytest.mark.integration
_MESSAGE = re.compile(r"^([FB])\t\d+\t(\w+)")  # libpq's trace with REGRESS_MODE: direction, length, type
JOHN = PatientPHI(patient_id="1", issuer="A", name="Doe^John", birth_date="19700101", sex="M")


def _segments(trace: str) -> list[list[str]]:
    """Split the trace at each resolve's first statement (the identical-arrival lookup and candidates);
    keep each message's direction and type (``F Parse``, ``B DataRow``, …)."""
    messages: list[tuple[str, str]] = []  # (direction and type, the message's whole text)
    for line in trace.splitlines():
        match = _MESSAGE.match(line)
        if match:
            messages.append((f"{match[1]} {match[2]}", line))
        elif messages:  # a query text's newline continues the message's line
            messages[-1] = (messages[-1][0], messages[-1][1] + "\n" + line)
    segments: list[list[str]] = []
    for kind, text in messages:
        if kind == "F Parse" and "WITH hit AS" in text:
            segments.append([])
        if segments:
            segments[-1].append(kind)
    return segments


def _round_trips(messages: list[str]) -> int:
    return sum(1 for a, b in pairwise(messages) if a[0] == "F" and b[0] == "B")


def _statements(messages: list[str]) -> int:
    return sum(1 for m in messages if m == "F Execute")


def test_round_trips_per_resolve(cw_dsn: str) -> None:
    handle, name = tempfile.mkstemp(prefix="tmi-trace-")
    try:
        with CrosswalkService.connect(cw_dsn, min_size=1, max_size=1) as svc:
            with svc._pool.connection() as conn:
                conn.pgconn.trace(handle)
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            svc.resolve(JOHN)  # brand-new patient
            svc.resolve(PatientPHI(patient_id="1", issuer="A", name="DOE^JOHN", birth_date="19700101",
                                   sex="M"))  # known patient, new arrival (new identity row)
            svc.resolve(JOHN)  # identical re-arrival
            with svc._pool.connection() as conn:
                conn.pgconn.untrace()  # flushes the trace
        segments = _segments(Path(name).read_text(errors="replace"))
    finally:
        os.close(handle)
        Path(name).unlink()
    assert [_round_trips(seg) for seg in segments] == [2, 2, 1]
    # One statement per round trip: the read (lookup + candidates) and the locked, guarded write
    # (migration 0004's guard function takes the locks inside the write statement).
    assert [_statements(seg) for seg in segments] == [2, 2, 1]
