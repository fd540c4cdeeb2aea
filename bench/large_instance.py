"""One ~500 MB tomosynthesis instance through the whole local stack: ``python -m bench.large_instance``
(``make bench-large``).

The guide's "instances can be 500 MB: stream, never load pixel data you don't need", measured on the real
processes: a stack on free loopback ports in a temporary folder (as ``bench.pipeline``), one synthetic
breast-tomosynthesis-like multi-frame (48 × 2048 × 2560, 16-bit, ~503 MB, written by streaming) sent by
DCMTK's ``storescu`` like a modality, then waited for until the pipeline marks it COMPLETED. Reported:

* the time for the C-STORE and until the instance is published;
* each component's peak resident memory (``VmHWM``) and how much it grew while the instance went through —
  the intake Orthanc (which also holds a received instance in memory while storing it; its plugin hands
  instances above 16 MB over by reference), the worker (streams: download, de-identification, the research
  upload and the STOW-RS body), the research Orthanc (receives the STOW-RS request), and moto (the local
  S3 emulator keeps every object in memory: it is the emulator's cost, not the pipeline's);
* that the research bucket and the research Orthanc hold the de-identified instance with its pixels.

Writes ``bench/results/large-instance.json``. Everything binds 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.pipeline import bench_stack, stack_db

RESULTS = Path(__file__).resolve().parent / "results" / "large-instance.json"
MB = 1024 * 1024


def _memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of ``pid`` in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _memory(stack: Any) -> dict[str, dict[str, int]]:
    out = {}
    for name in ("intake", "research", "moto", *stack.worker_names()):
        pid = stack.process(name).read_pid()
        if pid:
            out[name] = _memory_kb(pid)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the measurement; return the results."""
    import pydicom
    import requests

    from adapters.intake_writer import orthanc_instance_id
    from tmi.synthetic.dicom import write_multiframe_streaming

    folder = Path(tempfile.mkdtemp(prefix="tmi-bench-large-"))
    try:
        path = folder / "tomo.dcm"
        size = write_multiframe_streaming(path, seed="bench-large", frames=args.frames)
        sent = pydicom.dcmread(path, stop_before_pixels=True)
        name = orthanc_instance_id(str(sent.PatientID), str(sent.StudyInstanceUID),
                                   str(sent.SeriesInstanceUID), str(sent.SOPInstanceUID)) + ".dcm"
        print(f"bench: {size / MB:.0f} MB instance written; starting the stack", flush=True)
        with bench_stack(workers=1) as stack:
            before = _memory(stack)
            started = time.time()
            result = subprocess.run(
                # -R: propose only the file's own SOP class (the default list lacks breast tomosynthesis)
                ["storescu", "-R", "-aet", "DEMO_MODALITY", "-aec", stack.settings.intake_aet, "-to", "120",
                 "-ta", "120", "-td", "600", "127.0.0.1", str(stack.settings.intake_dicom_port), str(path)],
                capture_output=True, text=True, check=False, env={**os.environ, "TCP_NODELAY": "1"},
                timeout=args.timeout_s)
            stored = time.time()
            if result.returncode != 0:
                raise RuntimeError(f"storescu failed: {result.stderr[-500:]}")
            row = None
            with stack_db(stack) as conn:  # polled until the pipeline has finished the instance
                while time.time() - started < args.timeout_s:
                    row = conn.execute("SELECT state, research_key, research_sop_uid FROM pipeline_objects "
                                       "WHERE object_key LIKE %s ORDER BY updated_at DESC LIMIT 1",
                                       ("%" + name,)).fetchone()
                    if row and row[0] in ("COMPLETED", "QUARANTINED"):
                        break
                    time.sleep(0.5)
            finished = time.time()
            after = _memory(stack)
            checks: dict[str, Any] = {"state": row[0] if row else None}
            if row and row[1]:
                head = stack.s3_client().head_object(Bucket=stack.settings.research_bucket, Key=row[1])
                auth = (stack.settings.research_orthanc_user, stack.secrets().research_pipeline_password)
                found = requests.post(f"{stack.research_http}/tools/lookup", data=row[2], auth=auth,
                                      timeout=30).json()
                instance = [f for f in found if f["Type"] == "Instance"]
                orthanc_size = None
                if instance:
                    info = requests.get(f"{stack.research_http}/instances/{instance[0]['ID']}/attachments/"
                                        "dicom/info", auth=auth, timeout=30).json()
                    orthanc_size = int(info["UncompressedSize"])
                checks.update({"research_object_bytes": int(head["ContentLength"]),
                               "research_orthanc_bytes": orthanc_size,
                               "same_size_in_bucket_and_orthanc": orthanc_size == int(head["ContentLength"])})
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    memory = {
        component: {"rss_before_mb": round(before.get(component, {}).get("VmRSS", 0) / 1024, 1),
                    "peak_mb": round(values.get("VmHWM", 0) / 1024, 1),
                    "peak_growth_mb": round((values.get("VmHWM", 0)
                                             - before.get(component, {}).get("VmHWM", 0)) / 1024, 1)}
        for component, values in after.items()
    }
    return {
        "instance_mb": round(size / MB, 1),
        "frames": args.frames,
        "cstore_seconds": round(stored - started, 2),
        "published_seconds": round(finished - started, 2),
        "checks": checks,
        "memory": memory,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0]},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "peak_growth_mb: how much the component's peak resident memory (VmHWM) rose while the "
                "instance went through; moto is the local S3 emulator and keeps objects in memory",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=48, help="frames of 2048 x 2560 16-bit (48: ~503 MB)")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0 if results["checks"].get("state") == "COMPLETED" else 1


if __name__ == "__main__":
    raise SystemExit(main())
