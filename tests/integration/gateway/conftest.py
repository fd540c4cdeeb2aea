"""Fixtures of the gateway's integration tests: a migrated database, tokens, an app on real services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

MIGRATIONS = Path(__file__).resolve().parents[3] / "adapters" / "db" / "migrations"


def apply_schema(dsn: str) -> None:
    """Apply the project's migrations to ``dsn`` (the crosswalk's ``migrate`` when present)."""
    try:
        from adapters.db.migrate import migrate
    except ImportError:
        migrate = None
    if migrate is not None:
        migrate(dsn)
        return
    from yoyo import get_backend, read_migrations

    backend = get_backend(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    migrations = read_migrations(str(MIGRATIONS)).filter(lambda m: m.id.startswith("02"))
    try:
        with backend.lock():
            backend.apply_migrations(backend.to_apply(migrations))
    finally:
        backend.connection.close()


@pytest.fixture
def gateway_dsn(pg_dsn: str) -> Iterator[str]:
    """A fresh database with every migration applied."""
    apply_schema(pg_dsn)
    yield pg_dsn
