"""Crosswalk fixtures: a migrated fresh database per test and a service on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.db.crosswalk import CrosswalkService
from adapters.db.migrate import migrate
from tmi.crosswalk.model import Actor


@pytest.fixture
def cw_dsn(pg_dsn: str) -> str:
    migrate(pg_dsn)
    return pg_dsn


@pytest.fixture
def svc(cw_dsn: str) -> Iterator[CrosswalkService]:
    service = CrosswalkService.connect(cw_dsn, max_size=4)
    yield service
    service.close()


@pytest.fixture
def admin() -> Actor:
    return Actor(name="alice", role="admin", request_id="req-test-1")
