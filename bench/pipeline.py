"""Pipeline benchmark: ``python -m bench.pipeline`` (``make bench-pipeline``).

Starts a complete local stack in a temporary folder on free loopback ports (PostgreSQL, moto, intake and
research Orthanc, ``TMI_PIPELINE_WORKERS`` workers), then measures two things with small synthetic PHI-rich
instances sent over DICOM C-STORE by pynetdicom, like modalities:

1. **throughput**: ``--count`` (1,000) instances pushed as fast as possible through 4 parallel associations;
   sustained instances/s = instances / (last research-visible − first C-STORE start);
2. **latency at an offered load**: ``--rate`` (10) instances/s for ``--seconds`` (30) through 4 associations;
   per instance, from C-STORE completion (the modality's success response) to visibility in the research
   Orthanc (observed on its ``/changes`` feed, polled every 50 ms, each new instance's SOP Instance UID
   read back and matched to the keyed-hash UID of what was sent) — p50/p95/max.

The SOP lookups (one REST call per instance) run after the expected number of instances has appeared on
the feed, not while the pipeline is timed: they would otherwise take CPU from the two cores being
measured. The components' CPU is read at that moment; this process's own CPU (and its storescu
children) is reported separately as ``harness_cpu_seconds``.

Everything binds 127.0.0.1 (Orthanc listens on all interfaces; see docs/operations.md) and stops by itself.
Results go to ``bench/results/pipeline.json`` with the machine description; targets are reported, not
asserted: ≥30 instances/s sustained, p95 ≤2 s at 10 instances/s offered, on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def bench_stack(workers: int) -> Iterator[Any]:
    """A stack on free ports in a temp dir (no gateway); torn down afterwards."""
    from adapters.pipeline.config import get_pipeline_settings
    from adapters.stack import Stack
    from tmi.settings import Settings, get_settings

    run_dir = Path(tempfile.mkdtemp(prefix="tmi-bench-pipeline-"))
    run_dir.chmod(0o755)  # lets the `postgres` user (when we are root) keep its cluster in here
    env = {
        "TMI_RUN_DIR": str(run_dir), "TMI_PG_PORT": str(_free_port()), "TMI_S3_PORT": str(_free_port()),
        "TMI_INTAKE_DICOM_PORT": str(_free_port()), "TMI_INTAKE_HTTP_PORT": str(_free_port()),
        "TMI_RESEARCH_DICOM_PORT": str(_free_port()), "TMI_RESEARCH_HTTP_PORT": str(_free_port()),
        "TMI_GATEWAY_PORT": str(_free_port()), "TMI_STACK_GATEWAY": "0", "TMI_PIPELINE_WORKERS": str(workers),
    }
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "TMI_DATABASE_URL",
                "TMI_DEID_KEY", "TMI_DEID_KEY_FILE"):
        os.environ.pop(key, None)
    os.environ.update(env)
    get_settings.cache_clear()
    get_pipeline_settings.cache_clear()
    stack = Stack(Settings(), workers=workers)
    try:
        stack.up(progress=lambda m: print(f"bench: {m}", flush=True))
        yield stack
    finally:
        stack.down()
        kept = Path(tempfile.gettempdir()) / f"tmi-bench-pipeline-logs-{int(time.time())}"
        shutil.copytree(run_dir / "logs", kept, dirs_exist_ok=True)
        print(f"bench: component logs kept in {kept}", flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def make_instances(count: int, seed: str, rows: int, columns: int) -> list[Any]:
    """``count`` small PHI-rich MG instances (pydicom datasets), all distinct."""
    from tmi.synthetic.dicom import small_instance

    return [small_instance(i, seed=seed, rows=rows, columns=columns, modality="MG") for i in range(count)]


class ResearchWatcher(threading.Thread):
    """Polls the research Orthanc's ``/changes`` feed and notes when each new instance appeared.

    While the clock runs it only reads the feed (one request per 50 ms): which SOP Instance UID a change
    is costs one REST lookup per instance, on the same two cores as the pipeline being measured, so
    :meth:`identify` does those lookups when the caller asks, once the expected number of instances has
    appeared (the times recorded are the feed's, unaffected by when the lookup happens).
    """

    def __init__(self, base_url: str, auth: tuple[str, str]) -> None:
        super().__init__(daemon=True, name="research-watcher")
        self.session = requests_session(auth)  # the lookups' connection
        self.base = base_url
        self.appeared: dict[str, float] = {}  # Orthanc instance id -> first seen on the feed
        self.seen: dict[str, float] = {}  # SOP Instance UID -> first seen on the feed
        self._identified: set[str] = set()
        self._lock = threading.Lock()
        self.stop = threading.Event()
        last = self.session.get(f"{base_url}/changes", params={"last": ""}, timeout=10).json()
        self.since = int(last.get("Last", 0))

    def run(self) -> None:
        poller = requests_session(self.session.auth)  # the feed has its own connection
        while not self.stop.is_set():
            try:
                page = poller.get(f"{self.base}/changes", params={"since": self.since, "limit": 1000},
                                  timeout=10).json()
            except Exception:  # noqa: BLE001 - keep polling through a hiccup
                time.sleep(0.05)
                continue
            now = time.time()
            with self._lock:
                for change in page.get("Changes", []):
                    if change.get("ChangeType") == "NewInstance":
                        self.appeared.setdefault(change["ID"], now)
            self.since = int(page.get("Last", self.since))
            if page.get("Done", True):
                time.sleep(0.05)

    def count(self) -> int:
        """How many distinct instances have appeared so far."""
        with self._lock:
            return len(self.appeared)

    def identified(self) -> int:
        """How many appeared instances have been looked up (all of them, after :meth:`identify`)."""
        return len(self._identified)

    def identify(self) -> None:
        """Look up the SOP Instance UID of every instance not identified yet (after the timed part)."""
        with self._lock:
            todo = [(oid, t) for oid, t in self.appeared.items() if oid not in self._identified]
        for orthanc_id, when in todo:
            tags = self.session.get(f"{self.base}/instances/{orthanc_id}", timeout=10).json()
            sop = tags.get("MainDicomTags", {}).get("SOPInstanceUID")
            if sop:
                self.seen.setdefault(sop, when)
            self._identified.add(orthanc_id)


def requests_session(auth: Any) -> Any:
    """A plain requests session with ``auth``."""
    import requests

    session = requests.Session()
    session.auth = auth
    return session


def _per_second(offsets: list[float]) -> list[int]:
    """How many of ``offsets`` (seconds) fall in each whole second from 0."""
    counts = [0] * (int(max(offsets)) + 1 if offsets else 0)
    for offset in offsets:
        counts[max(0, int(offset))] += 1
    return counts


def _disable_nagle() -> None:
    """Set TCP_NODELAY on pynetdicom's client sockets, as modalities' DICOM stacks usually do (without it
    each DIMSE exchange waits on a delayed ACK)."""
    from pynetdicom.transport import AssociationSocket

    if getattr(AssociationSocket, "_tmi_nodelay", False):
        return
    original = AssociationSocket._create_socket

    def create(self: Any, address: Any) -> Any:
        sock = original(self, address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    AssociationSocket._create_socket = create  # type: ignore[method-assign]
    AssociationSocket._tmi_nodelay = True  # type: ignore[attr-defined]


counters: dict[str, Any] = {"reassociations": 0}


def send(stack: Any, datasets: list[Any], associations: int, rate: float | None) -> dict[str, float]:
    """C-STORE ``datasets`` over ``associations`` parallel associations; optionally paced to ``rate``/s.

    Returns ``{sop uid: time the C-STORE response arrived}``.
    """
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import DigitalMammographyXRayImageStorageForPresentation  # type: ignore

    _disable_nagle()
    done: dict[str, float] = {}
    counters["reassociations"] = 0
    lock = threading.Lock()
    start = time.time()
    failures: list[str] = []

    def worker(part: int) -> None:
        ae = AE(ae_title="DEMO_MODALITY")
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 60, 120, 120
        ae.add_requested_context(DigitalMammographyXRayImageStorageForPresentation,
                                 [ExplicitVRLittleEndian, ImplicitVRLittleEndian])

        def associate() -> Any:
            return ae.associate("127.0.0.1", stack.settings.intake_dicom_port,
                                ae_title=stack.settings.intake_aet)

        assoc = associate()
        try:
            for index in range(part, len(datasets), associations):
                if rate:
                    delay = start + index / rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
                ds = datasets[index]
                for _attempt in range(3):  # like a modality: re-associate and resend after an abort
                    if not assoc.is_established:
                        with lock:
                            counters["reassociations"] += 1
                        assoc = associate()
                        if not assoc.is_established:
                            time.sleep(0.5)
                            continue
                    status = assoc.send_c_store(ds)
                    if status is not None and int(getattr(status, "Status", 0xFFFF)) == 0:
                        with lock:
                            done[str(ds.SOPInstanceUID)] = time.time()
                        break
                else:
                    failures.append(f"C-STORE of instance {index} failed 3 times")
        finally:
            if assoc.is_established:
                assoc.release()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(associations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} C-STORE failures, e.g. {failures[0]}")
    return done


def send_storescu(stack: Any, datasets: list[Any], associations: int) -> dict[str, float]:
    """C-STORE ``datasets`` with DCMTK's ``storescu`` (C++, what PLATFORM-NOTES suggests as a modality),
    ``associations`` processes in parallel, each sending its share over one association.

    The throughput phase uses it: pynetdicom's sender intermittently lost an association near the end of a
    run (the intake Orthanc saw no request for its 30 s ``DicomScpTimeout`` and aborted the association;
    pynetdicom then waited ``network_timeout`` after the abort before re-associating), which made one
    run's sustained figure depend on a 150 s sender stall. storescu reports no per-instance completion
    time, so the returned times are all the end of the sending; only the latency phase needs per-instance
    times, and it keeps pynetdicom (paced, one instance at a time per association).
    """
    import subprocess

    folder = Path(tempfile.mkdtemp(prefix="tmi-bench-storescu-"))
    try:
        shares: list[list[str]] = [[] for _ in range(associations)]
        for index, ds in enumerate(datasets):
            path = folder / f"{index:06d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            shares[index % associations].append(str(path))
        env = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK reads it: no Nagle delay per DIMSE exchange
        started = time.time()
        procs = [subprocess.Popen(["storescu", "-aet", "DEMO_MODALITY", "-aec", stack.settings.intake_aet,
                                   "-to", "60", "-ta", "60", "-td", "120", "127.0.0.1",
                                   str(stack.settings.intake_dicom_port), *share],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for share in shares if share]
        errors = [p.communicate()[1].decode(errors="replace") for p in procs]
        failed = [e for p, e in zip(procs, errors, strict=True) if p.returncode != 0]
        if failed:
            raise RuntimeError(f"storescu failed: {failed[0][-500:]}")
        done = time.time()
        counters["cstore_started"] = started
        # storescu exits 0 even when a single C-STORE is refused; it says so on stderr (E:/W: lines)
        counters["storescu_messages"] = [line for e in errors for line in e.splitlines()
                                         if line[:2] in ("E:", "W:")][:20]
        return {str(ds.SOPInstanceUID): done for ds in datasets}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_visible(watcher: ResearchWatcher, research_uids: dict[str, str], timeout_s: float,
                 before_lookups: Callable[[], None] | None = None) -> dict[str, float]:
    """Wait until every research UID was seen; return ``{original sop: visible time}``.

    The SOP lookups run only once as many new instances as expected have appeared on the feed (then
    again for later arrivals if some expected UID is still missing), so they do not load the pipeline
    while it is being timed. ``before_lookups`` runs once, just before the first lookups (e.g. to read
    the components' CPU counters without the lookups in them)."""
    deadline = time.time() + timeout_s
    target = watcher.identified() + len(research_uids)
    while time.time() < deadline:
        if watcher.count() >= target:
            if before_lookups is not None:
                before_lookups()
                before_lookups = None
            watcher.identify()
            if all(uid in watcher.seen for uid in research_uids.values()):
                break
            target = watcher.count() + 1
        time.sleep(0.1)
    watcher.identify()
    return {sop: watcher.seen[uid] for sop, uid in research_uids.items() if uid in watcher.seen}


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def diagnose_missing(stack: Any, datasets: list[Any], visible: dict[str, float]) -> list[dict[str, Any]]:
    """For every sent instance that never became visible: where it got to (intake Orthanc, intake bucket,
    spool, pipeline record). Keys and Orthanc ids carry no PHI. (:func:`bench_stack` keeps the stack's logs
    when it stops.)"""
    import requests

    from adapters.intake_writer import orthanc_instance_id

    missing = [ds for ds in datasets if str(ds.SOPInstanceUID) not in visible]
    if not missing:
        return []
    auth = ("tmi-admin", stack.secrets().intake_admin_password)
    spool = list(stack.intake_spool_dir.glob("*")) if stack.intake_spool_dir.exists() else []
    pages = stack.s3_client().get_paginator("list_objects_v2").paginate(Bucket=stack.settings.intake_bucket)
    bucket_keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    out = []
    with stack_db(stack) as conn:
        for ds in missing:
            oid = orthanc_instance_id(str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                                      str(ds.SOPInstanceUID))
            answer = requests.get(f"{stack.intake_http}/instances/{oid}", auth=auth, timeout=10)
            rows = conn.execute("SELECT object_key, state, attempts, reason FROM pipeline_objects "
                                "WHERE object_key LIKE %s", (f"%{oid}%",)).fetchall()
            out.append({"orthanc_id": oid, "in_intake_orthanc": answer.status_code == 200,
                        "intake_bucket_keys": [k for k in bucket_keys if oid in k],
                        "spool_files": [f.name for f in spool if oid in f.name],
                        "pipeline_rows": [list(map(str, r)) for r in rows]})
    print(f"bench: {len(missing)} instance(s) never visible: see never_visible in the results", flush=True)
    return out


def _harness_cpu() -> float:
    """CPU seconds used by this process and its waited-for children (storescu) so far."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def component_cpu(stack: Any) -> dict[str, float]:
    """CPU seconds per stack component so far (PostgreSQL: the postmaster and its backends)."""
    from adapters.postgres_cluster import _resolve_data_dir

    out: dict[str, float] = {}
    for name in ("moto", "intake", "research", *stack.worker_names()):
        pid = stack.process(name).read_pid()
        if pid:
            out[name] = _proc_cpu(pid)
    pid_file = _resolve_data_dir(stack.run_dir / "pg" / "data") / "postmaster.pid"
    try:
        postmaster = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return out
    total = _proc_cpu(postmaster)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[-1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == postmaster:
                total += _proc_cpu(int(proc.name))
    out["postgres"] = total
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 1) for k in after}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run both phases; return the results document."""
    from tmi.deid import UidMapper, load_key

    with bench_stack(args.workers) as stack:
        key = load_key(stack.env()["TMI_DEID_KEY_FILE"])
        uids = UidMapper(key)
        secrets = stack.secrets()
        watcher = ResearchWatcher(stack.research_http, (stack.settings.research_orthanc_user,
                                                        secrets.research_pipeline_password))
        watcher.start()
        results: dict[str, Any] = {}

        print(f"bench: generating {args.count} + {int(args.rate * args.seconds)} instances", flush=True)
        burst = make_instances(args.count, "bench-burst", args.rows, args.columns)
        paced = make_instances(int(args.rate * args.seconds), "bench-paced", args.rows, args.columns)
        size = len(burst[0].PixelData)

        print(f"bench: throughput phase: {args.count} instances, {args.associations} associations",
              flush=True)
        if args.sender == "storescu":
            counters["reassociations"] = 0
            cpu0, load0 = component_cpu(stack), os.getloadavg()[0]
            harness0 = _harness_cpu()
            stored = send_storescu(stack, burst, args.associations)  # writes the files first, untimed
            t0 = float(counters["cstore_started"])
        else:
            cpu0, load0 = component_cpu(stack), os.getloadavg()[0]
            harness0 = _harness_cpu()
            t0 = time.time()
            stored = send(stack, burst, args.associations, rate=None)
        t_sent = time.time()
        at_end: dict[str, Any] = {}

        def snapshot() -> None:
            at_end["cpu"] = component_cpu(stack)
            at_end["harness"] = _harness_cpu()

        visible = wait_visible(watcher, {s: uids.map(s) for s in stored}, args.timeout_s, snapshot)
        if not at_end:
            snapshot()
        missing = diagnose_missing(stack, burst, visible)
        last = max(visible.values()) if visible else float("nan")
        # storescu gives no per-instance completion time: burst latencies only with the pynetdicom sender
        lat = [visible[s] - stored[s] for s in visible] if args.sender == "pynetdicom" else []
        results["throughput"] = {
            "instances": args.count, "associations": args.associations, "visible": len(visible),
            "cstore_seconds": round(t_sent - t0, 2), "cstore_per_s": round(args.count / (t_sent - t0), 1),
            "end_to_end_seconds": round(last - t0, 2),
            "sustained_instances_per_s": round(len(visible) / (last - t0), 1) if visible else 0.0,
            "latency_p50_s": round(statistics.median(lat), 3) if lat else None,
            "latency_p95_s": round(percentile(lat, 95), 3) if lat else None,
            "cpu_seconds_by_component": _delta(at_end["cpu"], cpu0),
            # this benchmark's own process and its storescu children (not in the components' total)
            "harness_cpu_seconds": round(at_end["harness"] - harness0, 2),
            # instances becoming visible in each second after the first C-STORE: shows ramp-up and tail
            "visible_per_second": _per_second([v - t0 for v in visible.values()]),
            "machine_load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "cstore_reassociations": counters["reassociations"],
            "never_visible": missing,
            "sender": args.sender,
            "storescu_warnings": counters.get("storescu_messages", []) if args.sender == "storescu" else None,
        }
        cpu = results["throughput"]["cpu_seconds_by_component"]
        results["throughput"]["cpu_ms_per_instance"] = {
            **{k: round(v * 1000 / args.count, 1) for k, v in cpu.items()},
            "total": round(sum(cpu.values()) * 1000 / args.count, 1)}
        print(f"bench: {results['throughput']}", flush=True)

        print(f"bench: latency phase: {args.rate}/s offered for {args.seconds}s", flush=True)
        cpu0, load0 = component_cpu(stack), os.getloadavg()[0]
        stored = send(stack, paced, args.associations, rate=args.rate)
        visible = wait_visible(watcher, {s: uids.map(s) for s in stored}, args.timeout_s)
        lat = [visible[s] - stored[s] for s in visible]
        results["latency"] = {
            "offered_instances_per_s": args.rate, "instances": len(paced), "visible": len(visible),
            "p50_s": round(statistics.median(lat), 3) if lat else None,
            "p95_s": round(percentile(lat, 95), 3) if lat else None,
            "max_s": round(max(lat), 3) if lat else None,
            "cpu_seconds_by_component": _delta(component_cpu(stack), cpu0),
            "machine_load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
        }
        print(f"bench: {results['latency']}", flush=True)
        watcher.stop.set()
        with stack_db(stack) as conn:
            results["pipeline_states"] = dict(conn.execute(
                "SELECT state, count(*) FROM pipeline_objects GROUP BY state").fetchall())
            results["objects_attempted_more_than_once"] = conn.execute(
                "SELECT count(*) FROM pipeline_objects WHERE attempts > 1").fetchone()[0]

    results["instance"] = {"rows": args.rows, "columns": args.columns, "pixel_bytes": size,
                           "modality": "MG", "phi_rich": True}
    results["stack"] = {"workers": args.workers,
                        "threads_per_worker": int(os.environ.get("TMI_PIPELINE_THREADS", "4")),
                        "s3": "moto server (in memory)", "orthanc": "1.10 (Debian), SQLite index"}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "processor": platform.processor() or "?"}
    results["targets"] = {
        "sustained_instances_per_s_min": 30,
        "sustained_met": (results["throughput"]["sustained_instances_per_s"] or 0) >= 30,
        "p95_at_10_per_s_max_s": 2.0,
        "p95_met": results["latency"]["p95_s"] is not None and results["latency"]["p95_s"] <= 2.0,
    }
    results["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.note:
        results["note"] = args.note
    return results


def markdown(results: dict[str, Any]) -> str:
    """A short summary of ``results`` (``bench/results/pipeline.md``)."""
    t, lat, tg = results["throughput"], results["latency"], results["targets"]
    cpu = t.get("cpu_ms_per_instance", {})
    lines = [
        f"# Pipeline benchmark ({results['when']})", "",
        f"- sustained: **{t['sustained_instances_per_s']} instances/s** ({t['visible']}/{t['instances']} "
        f"visible, {t['end_to_end_seconds']} s; C-STORE {t['cstore_per_s']}/s; re-associations "
        f"{t['cstore_reassociations']}); target ≥ {tg['sustained_instances_per_s_min']}: "
        f"{'met' if tg['sustained_met'] else 'not met'}",
        f"- at {lat['offered_instances_per_s']}/s offered: p50 {lat['p50_s']} s, p95 {lat['p95_s']} s, "
        f"max {lat['max_s']} s; target p95 ≤ {tg['p95_at_10_per_s_max_s']} s: "
        f"{'met' if tg['p95_met'] else 'not met'}",
        "- CPU ms per instance (throughput phase): "
        + ", ".join(f"{k} {v}" for k, v in cpu.items()),
        f"- 1-minute load average: throughput {t['machine_load_avg_1m']}, "
        f"latency {lat['machine_load_avg_1m']}",
        f"- states: {results['pipeline_states']}; attempted more than once: "
        f"{results['objects_attempted_more_than_once']}",
    ]
    if results.get("note"):
        lines.append(f"- note: {results['note']}")
    return "\n".join(lines) + "\n"


@contextmanager
def stack_db(stack: Any) -> Iterator[Any]:
    """A connection to the bench stack's database."""
    import psycopg

    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        yield conn


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--columns", type=int, default=128)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("TMI_PIPELINE_WORKERS", "2")))
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "pipeline.json")
    parser.add_argument("--sender", choices=("storescu", "pynetdicom"), default="storescu",
                        help="C-STORE sender of the throughput phase (the latency phase uses pynetdicom)")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. what else ran)")
    args = parser.parse_args(argv)
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
