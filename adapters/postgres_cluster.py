"""A private PostgreSQL cluster for the local stack and the test session (initdb + pg_ctl).

PostgreSQL refuses to run as root, so when we are root the server runs as the ``postgres`` user via
``runuser``, and its data folder must be reachable by that user. When ``data_dir`` is not (for example
a checkout under ``/root``), the cluster lives under ``/var/tmp`` instead, named after ``data_dir``,
and :func:`ensure_cluster` says so in its return value.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


class PostgresClusterError(RuntimeError):
    """The private cluster could not be created or started; the message says why and where the log is."""


@dataclass(frozen=True)
class Cluster:
    """A running private cluster: where it lives and how to reach it."""

    data_dir: Path
    port: int
    log_file: Path

    def dsn(self, dbname: str = "postgres") -> str:
        """Return a libpq DSN for ``dbname`` on this cluster (TCP on 127.0.0.1, trust auth)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"


def _pg_bin() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise PostgresClusterError(
        "PostgreSQL server binaries not found; install them with `apt-get install -y postgresql` "
        "(make install does this)"
    )


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _reachable_by_postgres(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    probe = path if path.exists() else path.parent
    while not probe.exists():
        probe = probe.parent
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(probe)], capture_output=True, check=False
    )
    return result.returncode == 0


def _resolve_data_dir(data_dir: Path) -> Path:
    data_dir = data_dir.resolve()
    if _reachable_by_postgres(data_dir.parent):
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    fallback = Path("/var/tmp") / f"tmi-pg-{digest}"  # noqa: S108 - checked below before any use
    # /var/tmp is world-writable: refuse a pre-planted symlink or a folder someone else owns.
    if fallback.is_symlink() or (fallback.exists() and fallback.stat().st_uid not in _trusted_uids()):
        raise PostgresClusterError(
            f"{fallback} exists but is a symlink or not owned by postgres; remove it, or put the run "
            "folder (TMI_RUN_DIR) somewhere the postgres user can reach"
        )
    return fallback


def _trusted_uids() -> set[int]:
    import pwd

    uids = {os.geteuid()}
    try:
        uids.add(pwd.getpwnam("postgres").pw_uid)
    except KeyError:
        pass
    return uids


def is_running(data_dir: Path) -> bool:
    """Return True when a postmaster is running on ``data_dir``."""
    data_dir = _resolve_data_dir(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        return False
    result = subprocess.run(
        _as_postgres([str(_pg_bin() / "pg_ctl"), "-D", str(data_dir), "status"]),
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def ensure_cluster(data_dir: Path, port: int, databases: tuple[str, ...] = ("tmi",),
                   server_settings: Mapping[str, str] | None = None) -> Cluster:
    """Create (if needed) and start (if needed) a private cluster on 127.0.0.1:``port``.

    Idempotent: an already running cluster is left alone. ``databases`` are created when missing.
    ``server_settings`` are extra ``postgres -c name=value`` settings for a cluster this call starts
    (e.g. the benchmark's ``shared_buffers`` sized to its data set).
    """
    data_dir = _resolve_data_dir(data_dir)
    pg_bin = _pg_bin()
    log_file = data_dir.parent / f"{data_dir.name}.log"
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data_dir, "postgres", "postgres")
            data_dir.chmod(0o700)
        result = subprocess.run(
            _as_postgres(
                [str(pg_bin / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--locale=C.UTF-8"]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresClusterError(f"initdb failed in {data_dir}:\n{result.stderr[-2000:]}")
    if not is_running(data_dir):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.touch()
        if os.geteuid() == 0:
            shutil.chown(log_file, "postgres", "postgres")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={data_dir} "
            "-c max_connections=200 -c fsync=on"
        )
        for name, value in (server_settings or {}).items():
            if not name.replace("_", "").isalnum() or not str(value).replace(".", "").isalnum():
                raise ValueError(f"unexpected server setting {name}={value!r}")
            options += f" -c {name}={value}"
        result = subprocess.run(
            _as_postgres(
                [str(pg_bin / "pg_ctl"), "-D", str(data_dir), "-l", str(log_file), "-w", "-t", "60",
                 "-o", options, "start"]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            raise PostgresClusterError(
                f"pg_ctl start failed for {data_dir} on port {port}: {result.stderr.strip()}\n{tail}"
            )
    cluster = Cluster(data_dir=data_dir, port=port, log_file=log_file)
    for name in databases:
        _create_database(cluster, name)
    return cluster


def _create_database(cluster: Cluster, name: str) -> None:
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(cluster.dsn(), autocommit=True, connect_timeout=5) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop_cluster(data_dir: Path, mode: str = "fast") -> None:
    """Stop the cluster on ``data_dir`` if it runs (``mode``: smart, fast or immediate)."""
    data_dir = _resolve_data_dir(data_dir)
    if is_running(data_dir):
        subprocess.run(
            _as_postgres([str(_pg_bin() / "pg_ctl"), "-D", str(data_dir), "-m", mode, "-w", "stop"]),
            capture_output=True,
            check=False,
        )
