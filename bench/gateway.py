"""Gateway benchmark: research catalog query latency with 1,000,000 instances, and the time to generate a
100,000-instance cohort manifest (JSON and CSV, presigned URLs, streamed over HTTP).

Run as ``python -m bench.gateway`` (``make bench-gateway``). It starts its own private PostgreSQL cluster
in a temporary folder on a free port (stopped and removed at the end), applies the migrations, bulk-loads
the catalog with COPY (250,000 four-view mammography studies of 100,000 pseudonymous patients), builds the
study aggregates, ANALYZEs, and then:

1. times ``GET /research/studies``-style catalog queries (``adapters.db.catalog.search_studies``) for
   several filter mixes, sort orders and keyset page depths, one at a time;
2. serves the real app with uvicorn on 127.0.0.1 and times ``POST /research/cohorts`` for a cohort of
   exactly 100,000 instances, from request to last byte, in JSON and in CSV (every URL presigned locally;
   the S3 endpoint is never contacted), and checks the manifest's count and shape.

Writes ``bench/results/gateway.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg

from adapters.db import catalog, tokens
from adapters.db.migrate import migrate
from adapters.postgres_cluster import ensure_cluster, stop_cluster

RESULTS = Path(__file__).with_name("results") / "gateway.json"
VIEWS = (("CC", "L"), ("MLO", "L"), ("CC", "R"), ("MLO", "R"))
ETHNIC = ("2106-3", "2054-5", "2028-9", "2076-8", "2186-5", "2131-1", "2106-3", "2054-5", "2186-5")
MANIFEST_GROUP = "2135-2"  # every 10th study: 25,000 studies x 4 = 100,000 instances
MAKERS = (
    ("HOLOGIC", "Selenia Dimensions"),
    ("GE", "Senographe Pristina"),
    ("SIEMENS", "Mammomat Revelation"),
    ("FUJIFILM", "Amulet Innovality"),
)
COLUMNS = (
    "sop_instance_uid",
    "series_instance_uid",
    "study_instance_uid",
    "pseudonym",
    "sex",
    "age_years",
    "ethnic_group",
    "modality",
    "body_part",
    "view_position",
    "laterality",
    "study_date",
    "manufacturer",
    "model",
    "bucket_key",
    "size_bytes",
    "sha256",
)
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pseudonym(n: int) -> str:
    chars = []
    for _ in range(10):
        n, r = divmod(n, 32)
        chars.append(CROCKFORD[r])
    return "TMI-" + "".join(reversed(chars))


def load_catalog(dsn: str, studies: int, patients: int, seed: int = 7) -> dict[str, float]:
    """COPY ``studies`` x 4 instances into ``research_instance``, aggregate the studies, ANALYZE."""
    rng = random.Random(seed)
    start = time.perf_counter()
    base = date(2010, 1, 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY research_instance ({', '.join(COLUMNS)}) FROM STDIN") as copy,
        ):
            buffer = io.StringIO()
            for s in range(studies):
                patient = rng.randrange(patients)
                pseudonym = _pseudonym(patient * 7919 + 13)
                study = f"2.25.{10**12 + s}"
                series = f"{study}.1"
                sex = "F" if patient % 50 else "M"
                age = 30 + (patient * 37 + s) % 60
                ethnic = MANIFEST_GROUP if s % 10 == 0 else ETHNIC[patient % len(ETHNIC)]
                modality = "MG" if s % 25 else "CR"
                maker, model = MAKERS[patient % len(MAKERS)]
                day = (base + timedelta(days=rng.randrange(365 * 15))).isoformat()
                for i, (view, lat) in enumerate(VIEWS):
                    sop = f"{series}.{i}"
                    size = 20_000_000 + rng.randrange(40_000_000)
                    digest = f"{rng.getrandbits(256):064x}"
                    buffer.write(
                        f"{sop}\t{series}\t{study}\t{pseudonym}\t{sex}\t{age}\t{ethnic}\t{modality}\tBREAST\t"
                        f"{view}\t{lat}\t{day}\t{maker}\t{model}\t{pseudonym}/{study}/{series}/{sop}.dcm\t"
                        f"{size}\t{digest}\n"
                    )
                if s % 5000 == 4999:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        loaded = time.perf_counter()
        aggregated = catalog.rebuild_studies(conn)
        aggregate_done = time.perf_counter()
        conn.execute("VACUUM ANALYZE research_instance")
        conn.execute("VACUUM ANALYZE research_study")
    assert aggregated == studies
    return {
        "copy_s": loaded - start,
        "aggregate_s": aggregate_done - loaded,
        "total_load_s": time.perf_counter() - start,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_queries(dsn: str, patients: int, repeats: int, seed: int = 11) -> dict[str, Any]:
    """Time catalog queries of several shapes; return per-kind and overall p50/p95/max in ms."""
    rng = random.Random(seed)
    F = catalog.StudyFilters
    kinds: dict[str, Callable[[], tuple[catalog.StudyFilters, str, int]]] = {
        "no_filter_newest": lambda: (F(), "-study_date", 0),
        "sex_age_view_laterality": lambda: (
            F(
                sex=("F",),
                age_min=(a := rng.randrange(30, 70)),
                age_max=a + 10,
                view_position=("CC",),
                laterality=(rng.choice("LR"),),
            ),
            "-study_date",
            0,
        ),
        "ethnic_modality_year": lambda: (
            F(
                ethnic_group=(rng.choice(ETHNIC),),
                modality=("MG",),
                study_date_from=date(y := rng.randrange(2010, 2025), 1, 1),
                study_date_to=date(y, 12, 31),
            ),
            "study_date",
            0,
        ),
        "one_patient": lambda: (
            F(pseudonym=(_pseudonym(rng.randrange(patients) * 7919 + 13),)),
            "study_date",
            0,
        ),
        "rare_modality_by_age": lambda: (
            F(modality=("CR",), manufacturer=(rng.choice(MAKERS)[0],)),
            "age_years",
            0,
        ),
        "page_20_deep": lambda: (F(sex=("F",)), "-age_years", 20),
    }
    timings: dict[str, list[float]] = {name: [] for name in kinds}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(3):  # warm the caches the way a running gateway has them
            for make in kinds.values():
                filters, sort, _pages = make()
                catalog.search_studies(conn, filters, sort=sort, limit=50)
        for _ in range(repeats):
            for name, make in kinds.items():
                filters, sort, pages = make()
                cursor = None
                for _page in range(pages):  # walk to the deep page untimed; time the page after
                    cursor = catalog.search_studies(
                        conn, filters, sort=sort, limit=50, cursor=cursor
                    ).next_cursor
                t0 = time.perf_counter()
                page = catalog.search_studies(conn, filters, sort=sort, limit=50, cursor=cursor)
                timings[name].append((time.perf_counter() - t0) * 1000)
                assert page.items or name in ("one_patient",)
    every = [t for values in timings.values() for t in values]
    summary = {
        name: {
            "p50_ms": round(statistics.median(v), 2),
            "p95_ms": round(_percentile(v, 0.95), 2),
            "max_ms": round(max(v), 2),
            "n": len(v),
        }
        for name, v in timings.items()
    }
    return {
        "by_kind": summary,
        "p50_ms": round(statistics.median(every), 2),
        "p95_ms": round(_percentile(every, 0.95), 2),
        "max_ms": round(max(every), 2),
        "n": len(every),
    }


def bench_manifest(dsn: str, expected: int) -> dict[str, Any]:
    """Serve the app with uvicorn (its own process, as deployed) and time 100,000-instance manifests."""
    import requests

    env = {
        **os.environ,
        "TMI_DATABASE_URL": dsn,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # never contacted: presigning is local
    }
    env.pop("AWS_SESSION_TOKEN", None)
    with psycopg.connect(dsn, autocommit=True) as conn:
        _, token = tokens.create_token(conn, name="bench", role="researcher")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "gateway.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.2)
        url = f"{base}/research/cohorts"
        headers = {"Authorization": f"Bearer {token}"}
        body = {"ethnic_group": [MANIFEST_GROUP]}
        requests.post(
            url, headers=headers, json={"pseudonym": ["TMI-WARMUP0000"]}, timeout=60
        ).raise_for_status()
        for fmt in ("json", "csv", "json"):
            t0 = time.perf_counter()
            first_byte = None
            chunks = []
            with requests.post(
                url, headers=headers, params={"format": fmt}, json=body, stream=True, timeout=120
            ) as response:
                response.raise_for_status()
                for chunk in response.iter_content(1 << 20):
                    if first_byte is None:
                        first_byte = time.perf_counter() - t0
                    chunks.append(chunk)
            elapsed = time.perf_counter() - t0
            data = b"".join(chunks)
            if fmt == "json":
                manifest = json.loads(data)
                count = len(manifest["instances"])
                assert manifest["count"] == count
                assert manifest["instances"][0]["url"].startswith("http://127.0.0.1:9/")
            else:
                count = data.count(b"\n") - 1
            assert count == expected, (fmt, count, expected)
            key = f"{fmt}_run2" if fmt in out else fmt
            out[key] = {
                "seconds": round(elapsed, 3),
                "first_byte_s": round(first_byte or 0, 3),
                "bytes": len(data),
                "instances": count,
            }
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.gateway``."""
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument(
        "--studies", type=int, default=250_000, help="studies of 4 instances (default 250,000)"
    )
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=60, help="timed queries per kind")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="tmi-bench-gateway-"))
    root.chmod(0o755)
    cluster = ensure_cluster(root / "data", _free_port(), databases=("tmi",))
    try:
        dsn = cluster.dsn("tmi")
        migrate(dsn)
        print(f"loading {args.studies * 4:,} catalog rows …", flush=True)
        load = load_catalog(dsn, args.studies, args.patients)
        print(f"  COPY {load['copy_s']:.1f} s, study aggregates {load['aggregate_s']:.1f} s", flush=True)
        queries = bench_queries(dsn, args.patients, args.repeats)
        print(f"catalog queries: p50 {queries['p50_ms']} ms, p95 {queries['p95_ms']} ms", flush=True)
        expected = (args.studies + 9) // 10 * 4
        manifest = bench_manifest(dsn, expected)
        print(
            f"manifest of {expected:,} instances: JSON {manifest['json']['seconds']} s, "
            f"CSV {manifest['csv']['seconds']} s",
            flush=True,
        )
    finally:
        stop_cluster(cluster.data_dir, mode="immediate")
        shutil.rmtree(cluster.data_dir, ignore_errors=True)
        cluster.log_file.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)
    worst_manifest = max(v["seconds"] for v in manifest.values())
    load_avg = os.getloadavg()
    result = {
        "catalog_rows": args.studies * 4,
        "catalog_studies": args.studies,
        "patients": args.patients,
        "load": {k: round(v, 2) for k, v in load.items()},
        "catalog_query_p50_ms": queries["p50_ms"],
        "catalog_query_p95_ms": queries["p95_ms"],
        "catalog_query": queries,
        "manifest_instances": expected,
        "manifest_json_seconds": manifest["json"]["seconds"],
        "manifest_csv_seconds": manifest["csv"]["seconds"],
        "manifest": manifest,
        "targets": {"manifest_100k_max_s": 10.0, "manifest_met": worst_manifest <= 10.0},
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1_5_15": [round(x, 2) for x in load_avg],  # the machine is shared
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
