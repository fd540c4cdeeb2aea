"""The private cluster fixture really starts PostgreSQL and gives each test its own database."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.integration


def test_each_test_gets_an_empty_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        listen = conn.execute("SHOW listen_addresses").fetchone()
    assert tables == (0,)
    assert listen == ("127.0.0.1",)
