"""Session-wide fixtures and the CI rule: with CI=true a skipped integration test is a failure."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Reusable service fixtures live in tests/fixtures/<name>.py; list each module here (one line each).
pytest_plugins: list[str] = [
    "tests.fixtures.s3",
    "tests.fixtures.localstack",
    "tests.fixtures.stack",
]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_skipped_integration: list[str] = []


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and any(any(item.iter_markers(n)) for n in ("integration", "localstack", "browser")):
        _skipped_integration.append(item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _skipped_integration:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if IN_CI and _skipped_integration:
        terminalreporter.section("CI: skipped integration tests count as failures")
        for nodeid in sorted(set(_skipped_integration)):
            terminalreporter.write_line(f"SKIPPED-IN-CI {nodeid}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """A private PostgreSQL cluster for the whole test session (127.0.0.1, random port)."""
    from adapters.postgres_cluster import PostgresClusterError, ensure_cluster, stop_cluster

    pg_ctls = ("/usr/lib/postgresql/15/bin/pg_ctl", "/usr/lib/postgresql/16/bin/pg_ctl")
    if not any(Path(p).exists() for p in pg_ctls):
        pytest.skip("PostgreSQL server not installed (make install installs it)")
    tmp_root = Path(tempfile.mkdtemp(prefix="tmi-test-pg-"))
    tmp_root.chmod(0o755)  # reachable by the postgres user, so the cluster stays in this private folder
    data_dir = tmp_root / "data"
    try:
        cluster = ensure_cluster(data_dir, free_port(), databases=())
    except PostgresClusterError as exc:  # pragma: no cover - environment problem, reported clearly
        pytest.fail(f"could not start the test PostgreSQL cluster: {exc}")
    yield cluster
    stop_cluster(cluster.data_dir, mode="immediate")
    # Only this session's folders: as root the cluster lives in /var/tmp/tmi-pg-<hash> (see
    # adapters.postgres_cluster), whose parent is shared with every other session's cluster.
    shutil.rmtree(cluster.data_dir, ignore_errors=True)
    shutil.rmtree(tmp_root, ignore_errors=True)
    cluster.log_file.unlink(missing_ok=True)
    shutil.rmtree(tmp_root, ignore_errors=True)


@pytest.fixture
def pg_dsn(pg_cluster: object, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on the session cluster for one test; dropped afterwards."""
    import psycopg
    from psycopg import sql

    cluster = pg_cluster
    name = "t_" + os.urandom(6).hex()
    admin_dsn = cluster.dsn()  # type: ignore[attr-defined]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield cluster.dsn(name)  # type: ignore[attr-defined]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
