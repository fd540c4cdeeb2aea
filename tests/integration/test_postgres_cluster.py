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


def test_server_settings_reach_the_started_cluster(tmp_path_factory: pytest.TempPathFactory) -> None:
    import shutil
    import socket

    from adapters.postgres_cluster import ensure_cluster, stop_cluster

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data_dir = tmp_path_factory.mktemp("pgset") / "data"
    with pytest.raises(ValueError, match="unexpected server setting"):
        ensure_cluster(data_dir, port, databases=(), server_settings={"shared_buffers": "1GB; rm -rf /"})
    cluster = ensure_cluster(data_dir, port, databases=(),
                             server_settings={"shared_buffers": "48MB", "checkpoint_timeout": "15min"})
    try:
        with psycopg.connect(cluster.dsn()) as conn:
            assert conn.execute("SHOW shared_buffers").fetchone() == ("48MB",)
            assert conn.execute("SHOW checkpoint_timeout").fetchone() == ("15min",)
    finally:
        stop_cluster(cluster.data_dir, mode="fast")
        shutil.rmtree(cluster.data_dir, ignore_errors=True)  # may live under /var/tmp (root runs)
        cluster.log_file.unlink(missing_ok=True)
