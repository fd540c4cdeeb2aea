"""A worker started while PostgreSQL is unreachable waits for it; other start-up errors end the process."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from adapters.cli import worker as worker_module


def test_start_worker_waits_while_the_database_is_unreachable(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    failures: list[BaseException] = [PoolTimeout("pool initialization incomplete after 30 sec"),
                                     psycopg.OperationalError("connection refused")]
    made: list[tuple[str, int | None]] = []

    def fake_worker(name: str, threads: int | None = None) -> Any:
        if failures:
            raise failures.pop(0)
        made.append((name, threads))
        return "the worker"

    monkeypatch.setattr(worker_module, "Worker", fake_worker)
    with caplog.at_level(logging.WARNING, logger=worker_module.logger.name):
        assert worker_module.start_worker("worker-1", 3, retry_s=0) == "the worker"
    assert made == [("worker-1", 3)]
    assert [r.getMessage() for r in caplog.records] == ["database not reachable; retrying"] * 2


def test_start_worker_does_not_wait_for_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def broken(name: str, threads: int | None = None) -> Any:
        calls.append(name)
        raise ValueError("TMI_DEID_KEY_FILE: no such file")

    monkeypatch.setattr(worker_module, "Worker", broken)
    with pytest.raises(ValueError, match="no such file"):
        worker_module.start_worker("worker-1", retry_s=0)
    assert calls == ["worker-1"]
