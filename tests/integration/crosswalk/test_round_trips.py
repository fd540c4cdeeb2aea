"""resolve() round trips, counted on the wire with the libpq protocol trace.

Latency on a shared host is noise; the number of times the client must stop and wait for the server
per resolve is not, and it is what the latency budget rests on. A round trip is a run of frontend (F)
messages followed by backend (B) messages: statements pipelined before waiting count once.
"""

from __future__ import annotations

import os
import tempfile
from itertools import pairwise
from pathlib import Path

import pytest
from psycopg import pq

from adapters.db.crosswalk import CrosswalkService
from tmi.ports import PatientPHI

pytestmark = pytest.mark.integration
JOHN = PatientPHI(patient_id="1", issuer="A", name="Doe^John", birth_date="19700101", sex="M")


def _segments(trace: str) -> list[list[str]]:
    """Split the trace at each resolve's first statement (the fingerprint lookup)."""
    segments: list[list[str]] = []
    for line in trace.splitlines():
        if line.startswith("F") and "\tParse\t" in line and "WITH hit AS" in line:
            segments.append([])
        if segments and line[:1] in ("F", "B"):
            segments[-1].append(line[:1])
    return segments


def _round_trips(kinds: list[str]) -> int:
    return sum(1 for a, b in pairwise(kinds) if a == "F" and b == "B")


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
        counts = [_round_trips(seg) for seg in _segments(Path(name).read_text(errors="replace"))]
    finally:
        os.close(handle)
        Path(name).unlink()
    assert counts == [2, 2, 1]
