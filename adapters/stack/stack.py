"""`tmi stack up | down | status | logs`: every component of the local stack as a plain process.

Order of ``up`` (each step is skipped when its component already runs and answers its health check, so a
second ``up`` on a running stack does nothing):

1. PostgreSQL: the private cluster under ``run_dir`` (unless ``TMI_DATABASE_URL`` points elsewhere), then
   every migration (``adapters.db.migrate``);
2. moto's server for S3 + SQS on ``s3_port`` (unless ``AWS_ENDPOINT_URL*`` points at another endpoint);
3. the storage bootstrap (``adapters.bootstrap``: buckets, queue + DLQ, notification), idempotent;
4. intake and research Orthanc (``orthanc/*.json``, Python plugin), SQLite index under ``run_dir``;
5. the gateway (``uvicorn gateway.app:app``) when that module exists;
6. ``TMI_PIPELINE_WORKERS`` worker processes (``tmi worker``).

Orthanc 1.10 has no bind-address option: its HTTP and DICOM ports listen on every interface (HTTP refuses
remote clients with ``RemoteAccessAllowed: false``; DICOM accepts only allow-listed AE titles from
allow-listed hosts). Everything else binds 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import socket
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.intake_writer import spool_counts
from tmi.errors import TmiError
from tmi.settings import Settings

from .process import ManagedProcess

logger = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parents[2]
ORTHANC_DIR = PROJECT_DIR / "orthanc"
PLUGIN = ORTHANC_DIR / "plugin" / "intake_plugin.py"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "tmi-local", "AWS_SECRET_ACCESS_KEY": "tmi-local-secret"}
RESEARCHER_USER = "researcher"


class StackError(TmiError):
    """A component did not start or did not become healthy; the message names its log file."""


@dataclass(frozen=True)
class Secrets:
    """Local-stack passwords, generated once into ``run_dir/secrets.json`` (0600)."""

    research_pipeline_password: str
    researcher_password: str
    intake_admin_password: str


def _http_ok(url: str, auth: tuple[str, str] | None = None, timeout: float = 2.0) -> bool:
    import requests

    try:
        response = requests.get(url, auth=auth, timeout=timeout)
    except requests.RequestException:
        return False
    return response.status_code < 500


def _orthanc_ok(url: str, username: str, password: str) -> bool:
    """True when the Orthanc at ``url`` answers ``GET /system`` with these credentials."""
    import httpx
    from pyorthanc import Orthanc

    try:
        with Orthanc(url, username=username, password=password, timeout=2.0) as client:
            client.get_system()
    except httpx.HTTPError:
        return False
    return True


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Stack:
    """The local stack for one ``Settings`` (ports, names, run_dir)."""

    def __init__(self, settings: Settings, workers: int | None = None) -> None:
        from adapters.pipeline.config import get_pipeline_settings

        self.settings = settings
        self.run_dir = Path(settings.run_dir).resolve()
        self.state_dir = self.run_dir / "stack"
        self.log_dir = self.run_dir / "logs"
        self.workers = workers if workers is not None else get_pipeline_settings().workers
        external_s3 = settings.s3_endpoint_url
        self.manages_s3 = not external_s3 or external_s3 == self.local_s3_endpoint
        self.manages_postgres = settings.database_url is None

    # ------------------------------------------------------------------ endpoints

    @property
    def local_s3_endpoint(self) -> str:
        """moto's server endpoint when the stack runs it."""
        return f"http://127.0.0.1:{self.settings.s3_port}"

    @property
    def s3_endpoint(self) -> str:
        """The S3 endpoint every component uses."""
        return self.local_s3_endpoint if self.manages_s3 else str(self.settings.s3_endpoint_url)

    @property
    def database_url(self) -> str:
        """The crosswalk database DSN."""
        return self.settings.effective_database_url

    @property
    def intake_http(self) -> str:
        """Intake Orthanc REST base URL."""
        return f"http://127.0.0.1:{self.settings.intake_http_port}"

    @property
    def intake_spool_dir(self) -> Path:
        """Where the intake plugin spools instances until they are in the intake bucket."""
        return self.run_dir / "orthanc" / "intake-spool"

    @property
    def research_http(self) -> str:
        """Research Orthanc REST base URL."""
        return f"http://127.0.0.1:{self.settings.research_http_port}"

    @property
    def gateway_http(self) -> str:
        """Gateway base URL."""
        return f"http://127.0.0.1:{self.settings.gateway_port}"

    def process(self, name: str) -> ManagedProcess:
        """The managed process ``name`` (``moto``, ``intake``, ``research``, ``gateway``, ``worker-1``…)."""
        return ManagedProcess(name, self.state_dir / f"{name}.pid", self.log_dir / f"{name}.log")

    def worker_names(self) -> list[str]:
        """Names of the worker processes this stack runs."""
        return [f"worker-{i}" for i in range(1, self.workers + 1)]

    # ------------------------------------------------------------------ secrets and environment

    def secrets(self) -> Secrets:
        """Load (or create, 0600) the local passwords; ``TMI_RESEARCH_ORTHANC_PASSWORD`` wins when set."""
        path = self.run_dir / "secrets.json"
        data: dict[str, str] = {}
        if path.exists():
            data = json.loads(path.read_text())
        changed = False
        for name in ("research_pipeline_password", "researcher_password", "intake_admin_password"):
            if not data.get(name):
                data[name] = secrets.token_urlsafe(18)
                changed = True
        if changed:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
        if self.settings.research_orthanc_password:
            data["research_pipeline_password"] = self.settings.research_orthanc_password
        return Secrets(**{k: data[k] for k in Secrets.__dataclass_fields__})

    def deid_key_file(self) -> Path | None:
        """The de-identification key file workers use (created 0600 under run_dir when none is configured)."""
        if os.environ.get("TMI_DEID_KEY"):
            return None
        configured = os.environ.get("TMI_DEID_KEY_FILE") or (
            str(self.settings.deid_key_file) if self.settings.deid_key_file else None)
        if configured:
            return Path(configured).resolve()
        from tmi.deid.keys import create_key_file

        path = self.run_dir / "deid.key"
        if not path.exists():
            try:
                create_key_file(path)
            except FileExistsError:
                pass
        return path

    def env(self) -> dict[str, str]:
        """Environment for every child process: endpoints, credentials, ports, DSN, key file."""
        s = self.settings
        env = dict(os.environ)
        if self.manages_s3:
            env["AWS_ENDPOINT_URL"] = self.local_s3_endpoint
            env.pop("AWS_ENDPOINT_URL_S3", None)
            env.pop("AWS_ENDPOINT_URL_SQS", None)
            for name, value in LOCAL_CREDENTIALS.items():
                env.setdefault(name, value)
        env.setdefault("AWS_DEFAULT_REGION", s.aws_region)
        pw = self.secrets()
        env.update({
            "TMI_RUN_DIR": str(self.run_dir),
            "TMI_DATABASE_URL": self.database_url,
            "TMI_PG_PORT": str(s.pg_port),
            "TMI_S3_PORT": str(s.s3_port),
            "TMI_INTAKE_BUCKET": s.intake_bucket,
            "TMI_RESEARCH_BUCKET": s.research_bucket,
            "TMI_QUARANTINE_BUCKET": s.quarantine_bucket,
            "TMI_INTAKE_PREFIX": s.intake_prefix,
            "TMI_INTAKE_QUEUE": s.intake_queue,
            "TMI_INTAKE_DLQ": s.intake_dlq,
            "TMI_INTAKE_AET": s.intake_aet,
            "TMI_INTAKE_DICOM_PORT": str(s.intake_dicom_port),
            "TMI_INTAKE_HTTP_PORT": str(s.intake_http_port),
            "TMI_RESEARCH_AET": s.research_aet,
            "TMI_RESEARCH_DICOM_PORT": str(s.research_dicom_port),
            "TMI_RESEARCH_HTTP_PORT": str(s.research_http_port),
            "TMI_RESEARCH_ORTHANC_USER": s.research_orthanc_user,
            "TMI_RESEARCH_ORTHANC_PASSWORD": pw.research_pipeline_password,
            "TMI_GATEWAY_PORT": str(s.gateway_port),
            "PYTHONUNBUFFERED": "1",
        })
        key_file = self.deid_key_file()
        if key_file is not None:
            env["TMI_DEID_KEY_FILE"] = str(key_file)
        pythonpath = env.get("PYTHONPATH", "")
        if str(PROJECT_DIR) not in pythonpath.split(os.pathsep):
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_DIR), pythonpath) if p)
        return env

    def _orthanc_env(self, role: str) -> dict[str, str]:
        env = self.env()
        pw = self.secrets()
        env.update({
            "TMI_ORTHANC_PLUGIN": str(PLUGIN),
            "TMI_PROJECT_DIR": str(PROJECT_DIR),
            "TMI_SITE_PACKAGES": sysconfig.get_paths()["purelib"],
            "TMI_INTAKE_ADMIN_PASSWORD": pw.intake_admin_password,
            "TMI_RESEARCHER_PASSWORD": pw.researcher_password,
            "TMI_INTAKE_STORAGE_DIR": str(self.run_dir / "orthanc" / "intake"),
            "TMI_RESEARCH_STORAGE_DIR": str(self.run_dir / "orthanc" / "research"),
            "TMI_INTAKE_SPOOL_DIR": str(self.intake_spool_dir),
            # DCMTK (inside Orthanc) disables Nagle's algorithm when TCP_NODELAY is set: without it every
            # DIMSE exchange waits on delayed ACKs (~100 ms per C-STORE on loopback instead of ~20 ms).
            "TCP_NODELAY": "1",
        })
        return env

    # ------------------------------------------------------------------ health

    def postgres_healthy(self) -> bool:
        """True when the crosswalk database answers ``SELECT 1``."""
        import psycopg

        try:
            with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def s3_healthy(self) -> bool:
        """True when the S3 endpoint lists buckets."""
        if self.manages_s3:
            return _port_open(self.settings.s3_port) and _http_ok(self.local_s3_endpoint + "/moto-api/")
        try:
            self.s3_client().list_buckets()
        except Exception:  # noqa: BLE001 - any failure means unhealthy
            return False
        return True

    def intake_healthy(self) -> bool:
        """True when the intake Orthanc REST API answers ``/system`` (pyorthanc, admin account)."""
        return _orthanc_ok(self.intake_http, "tmi-admin", self.secrets().intake_admin_password)

    def research_healthy(self) -> bool:
        """True when the research Orthanc REST API answers ``/system`` (pyorthanc, pipeline account)."""
        return _orthanc_ok(self.research_http, self.settings.research_orthanc_user,
                           self.secrets().research_pipeline_password)

    def gateway_enabled(self) -> bool:
        """True when the gateway application module exists in this checkout (``TMI_STACK_GATEWAY=0`` turns
        the gateway off, e.g. for pipeline-only test stacks)."""
        if os.environ.get("TMI_STACK_GATEWAY", "1").lower() in ("0", "false", "no"):
            return False
        try:
            return importlib.util.find_spec("gateway.app") is not None
        except (ImportError, ValueError):
            return False

    def gateway_healthy(self) -> bool:
        """True when the gateway answers HTTP."""
        return self.process("gateway").alive() and _http_ok(self.gateway_http + "/")

    def worker_healthy(self, name: str) -> bool:
        """True when the worker process runs."""
        return self.process(name).alive()

    # ------------------------------------------------------------------ clients

    def s3_client(self) -> Any:
        """A boto3 S3 client on the stack's endpoint."""
        import boto3

        env = self.env()
        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"))

    def sqs_client(self) -> Any:
        """A boto3 SQS client on the stack's endpoint."""
        import boto3

        env = self.env()
        endpoint = self.local_s3_endpoint if self.manages_s3 else self.settings.sqs_endpoint_url
        return boto3.client("sqs", endpoint_url=endpoint, region_name=env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"))

    # ------------------------------------------------------------------ up / down

    def up(self, progress: Callable[[str], None] | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
        """Start every component that is not already running and healthy; return :meth:`status`."""
        say = progress or (lambda message: logger.info("%s", message))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.secrets()
        self._up_postgres(say)
        self._up_moto(say, timeout_s)
        self._bootstrap(say)
        self._up_orthanc(say, timeout_s)
        if self.gateway_enabled():
            try:
                self._up_gateway(say, timeout_s)
            except StackError as exc:  # the pipeline does not need the gateway: report and carry on
                say(f"gateway: WARNING {exc}")
        self._up_workers(say)
        return self.status()

    def _up_postgres(self, say: Callable[[str], None]) -> None:
        from adapters.db.migrate import migrate

        if self.manages_postgres and not self.postgres_healthy():
            from adapters.postgres_cluster import ensure_cluster

            say(f"postgres: starting private cluster on 127.0.0.1:{self.settings.pg_port}")
            ensure_cluster(self.run_dir / "pg" / "data", self.settings.pg_port, databases=("tmi",))
        applied = migrate(self.database_url)
        if applied:
            say(f"postgres: applied migrations {', '.join(applied)}")

    def _up_moto(self, say: Callable[[str], None], timeout_s: float) -> None:
        if not self.manages_s3:
            say(f"s3: using external endpoint {self.s3_endpoint}")
            return
        proc = self.process("moto")
        if proc.alive() and self.s3_healthy():
            return
        if _port_open(self.settings.s3_port):
            raise StackError(f"port {self.settings.s3_port} is taken by another program (set TMI_S3_PORT)")
        # moto's own app behind a leaner server (see adapters/stack/moto_server.py); same S3/SQS behaviour
        argv = [sys.executable, "-m", "adapters.stack.moto_server"]
        say(f"s3: starting moto server on {self.local_s3_endpoint}")
        proc.start([*argv, "-H", "127.0.0.1", "-p", str(self.settings.s3_port)], self.env(), cwd=PROJECT_DIR)
        self._wait("moto", self.s3_healthy, timeout_s)
        self._forget_object_claims(say)

    def _forget_object_claims(self, say: Callable[[str], None]) -> None:
        """A fresh moto server is empty (it keeps objects in memory only): the pipeline's claims on the
        objects of an earlier run name objects that no longer exist, so they are dropped. Instances sent
        again are then processed again (idempotently: same research keys, same UIDs)."""
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn, conn.transaction():
            conn.execute("DELETE FROM pipeline_quarantine")
            dropped = conn.execute("DELETE FROM pipeline_objects").rowcount
        if dropped:
            say(f"s3: fresh in-memory object store; dropped {dropped} claim(s) of the previous run")

    def _bootstrap(self, say: Callable[[str], None]) -> None:
        from adapters.bootstrap import bootstrap

        result = bootstrap(self.settings, self.s3_client(), self.sqs_client())
        if result.changed:
            say(f"storage: bootstrap applied {len(result.changed)} change(s)")
        (self.state_dir).mkdir(parents=True, exist_ok=True)
        (self.state_dir / "storage.json").write_text(json.dumps(result.to_dict(), indent=1))

    def _up_orthanc(self, say: Callable[[str], None], timeout_s: float) -> None:
        pending: list[tuple[str, Callable[[], bool]]] = []
        for role, healthy, port in (("intake", self.intake_healthy, self.settings.intake_http_port),
                                    ("research", self.research_healthy, self.settings.research_http_port)):
            proc = self.process(role)
            if proc.alive() and healthy():
                continue
            if proc.alive():
                pending.append((role, healthy))
                continue
            if _port_open(port):
                raise StackError(f"{role} Orthanc HTTP port {port} is taken by another program")
            (self.run_dir / "orthanc" / role).mkdir(parents=True, exist_ok=True)
            say(f"{role}: starting Orthanc (HTTP {port})")
            proc.start(["Orthanc", str(ORTHANC_DIR / f"{role}.json")], self._orthanc_env(role))
            pending.append((role, healthy))
        for role, healthy in pending:
            self._wait(role, healthy, timeout_s)

    def _up_gateway(self, say: Callable[[str], None], timeout_s: float) -> None:
        proc = self.process("gateway")
        if proc.alive() and self.gateway_healthy():
            return
        say(f"gateway: starting on {self.gateway_http}")
        proc.start([sys.executable, "-m", "uvicorn", "gateway.app:app", "--host", "127.0.0.1", "--port",
                    str(self.settings.gateway_port), "--no-access-log"], self.env(), cwd=PROJECT_DIR)
        self._wait("gateway", self.gateway_healthy, timeout_s)

    def _up_workers(self, say: Callable[[str], None]) -> None:
        started = []
        for name in self.worker_names():
            proc = self.process(name)
            if proc.alive():
                continue
            proc.start([sys.executable, "-m", "adapters.cli.worker", "--name", name], self.env(),
                       cwd=PROJECT_DIR)
            started.append(name)
        if started:
            say(f"workers: started {', '.join(started)}")
            time.sleep(0.5)
            for name in started:
                if not self.process(name).alive():
                    raise StackError(f"{name} exited at start; see {self.process(name).log_file}")

    def _wait(self, name: str, healthy: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        proc = self.process(name)
        while time.monotonic() < deadline:
            if healthy():
                return
            if not proc.alive():
                raise StackError(f"{name} exited during start-up; see {proc.log_file}")
            time.sleep(0.2)
        raise StackError(f"{name} not healthy after {timeout_s:.0f}s; see {proc.log_file}")

    def start_component(self, name: str, timeout_s: float = 60.0) -> None:
        """(Re)start one component (``moto``, ``intake``, ``research``, ``gateway`` or a worker)."""
        say: Callable[[str], None] = lambda message: logger.info("%s", message)  # noqa: E731
        if name in ("intake", "research"):
            self._up_orthanc(say, timeout_s)
        elif name == "moto":
            self._up_moto(say, timeout_s)
            self._bootstrap(say)
        elif name == "gateway":
            self._up_gateway(say, timeout_s)
        else:
            self._up_workers(say)

    def stop_component(self, name: str) -> bool:
        """Stop one component by its PID file."""
        return self.process(name).stop()

    def components(self) -> list[str]:
        """Managed process names, in shutdown order (workers first, storage last)."""
        return [*self.worker_names(), *self._extra_workers(), "gateway", "intake", "research", "moto"]

    def _extra_workers(self) -> Iterable[str]:
        known = set(self.worker_names())
        if self.state_dir.exists():
            for pid_file in sorted(self.state_dir.glob("worker-*.pid")):
                if pid_file.stem not in known:
                    yield pid_file.stem

    def down(self, progress: Callable[[str], None] | None = None) -> list[str]:
        """Stop every component by PID (workers first), then the private PostgreSQL cluster."""
        say = progress or (lambda message: logger.info("%s", message))
        stopped = []
        for name in self.components():
            if self.process(name).stop():
                say(f"{name}: stopped")
                stopped.append(name)
        if self.manages_postgres:
            from adapters.postgres_cluster import is_running, stop_cluster

            data_dir = self.run_dir / "pg" / "data"
            if is_running(data_dir):
                stop_cluster(data_dir)
                say("postgres: stopped")
                stopped.append("postgres")
        return stopped

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """Endpoints and health of every component (no passwords)."""
        s = self.settings
        gateway_on = self.gateway_enabled()
        workers = {name: self.worker_healthy(name) for name in self.worker_names()}
        status: dict[str, Any] = {
            "intake": {"aet": s.intake_aet, "host": s.host, "dicom_port": s.intake_dicom_port,
                       "http": self.intake_http, "healthy": self.intake_healthy(),
                       "spool": spool_counts(self.intake_spool_dir)},
            "research": {"aet": s.research_aet, "http": self.research_http,
                         "dicomweb": self.research_http + "/dicom-web",
                         "explorer": self.research_http + "/app/explorer.html",
                         "researcher_user": RESEARCHER_USER, "healthy": self.research_healthy()},
            "gateway": {"http": self.gateway_http, "enabled": gateway_on,
                        "healthy": self.gateway_healthy() if gateway_on else None},
            "s3": {"endpoint": self.s3_endpoint, "managed": self.manages_s3, "healthy": self.s3_healthy(),
                   "buckets": {"intake": s.intake_bucket, "research": s.research_bucket,
                               "quarantine": s.quarantine_bucket},
                   "queue": s.intake_queue, "dlq": s.intake_dlq},
            "postgres": {"managed": self.manages_postgres,
                         "port": s.pg_port if self.manages_postgres else None,
                         "healthy": self.postgres_healthy()},
            "workers": workers,
            "run_dir": str(self.run_dir),
        }
        parts = [status["intake"]["healthy"], status["research"]["healthy"], status["s3"]["healthy"],
                 status["postgres"]["healthy"], all(workers.values()) and bool(workers)]
        if gateway_on:
            parts.append(bool(status["gateway"]["healthy"]))
        status["healthy"] = all(parts)
        return status

    def log_files(self, component: str | None = None) -> list[Path]:
        """Log files of ``component`` (or of all components)."""
        if component:
            if component == "postgres":
                return [self._postgres_log()]
            return [self.process(component).log_file]
        files = sorted(self.log_dir.glob("*.log")) if self.log_dir.exists() else []
        return [*files, self._postgres_log()]

    def _postgres_log(self) -> Path:
        """The private cluster's log (next to its data folder, which may live under /var/tmp as root)."""
        from adapters.postgres_cluster import _resolve_data_dir

        data_dir = _resolve_data_dir(self.run_dir / "pg" / "data")
        return data_dir.parent / f"{data_dir.name}.log"
