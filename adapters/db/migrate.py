"""Apply the yoyo migrations in ``adapters/db/migrations/`` (every area's files, in dependency order)."""

from __future__ import annotations

import logging
from pathlib import Path

from yoyo import get_backend, read_migrations

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def yoyo_uri(dsn: str) -> str:
    """Turn a libpq URI (``postgresql://``/``postgres://``) into yoyo's psycopg 3 backend URI."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix):]
    raise ValueError("migrate() needs a postgresql:// URI")


def migrate(dsn: str, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration to the database at ``dsn``; return the ids applied (idempotent).

    yoyo takes a lock table, so several processes may call this at start-up at the same time.
    """
    backend = get_backend(yoyo_uri(dsn))
    try:
        migrations = read_migrations(str(migrations_dir))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        applied = [m.id for m in pending]
        if applied:
            logger.info("applied migrations: %s", ", ".join(applied))
        return applied
    finally:
        connection = getattr(backend, "_connection", None)
        if connection is not None:
            connection.close()
