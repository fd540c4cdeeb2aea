"""The de-identification benchmark harness measures, fails honestly, and computes targets from data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import deid as bench

ROOT = Path(__file__).resolve().parents[3]


def test_measure_reports_peak_rss_and_time(tmp_path: Path) -> None:
    code = "b = bytearray(150_000_000); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(0.3)"
    run = bench.measure([sys.executable, "-c", code], timeout_s=60, stderr_path=tmp_path / "err")
    assert run.ok and run.exit_code == 0
    assert run.wall_s >= 0.3
    assert run.peak_rss_mb >= 150
    assert run.peak_tree_rss_mb >= 150  # sampled while it slept


def test_measure_reports_failure_and_timeout(tmp_path: Path) -> None:
    failed = bench.measure([sys.executable, "-c", "import sys; sys.exit('boom')"], timeout_s=60,
                           stderr_path=tmp_path / "err")
    assert not failed.ok and failed.exit_code == 1 and failed.error and "boom" in failed.error
    slow = bench.measure([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5,
                         stderr_path=tmp_path / "err2")
    assert not slow.ok and slow.error and "timed out" in slow.error and slow.wall_s < 10


def _corpus(tools: dict[str, float | None]) -> dict[str, object]:
    out: dict[str, object] = {}
    for tool, median in tools.items():
        out[tool] = {"ok": False, "error": "crashed"} if median is None else {
            "ok": True, "median_s": median, "peak_rss_mb": 80.0}
    return out


@pytest.mark.parametrize(("tmi_s", "met"), [(12.0, True), (13.3, True), (13.4, False), (20.0, False)])
def test_targets_are_computed_from_measurements(tmi_s: float, met: bool) -> None:
    small = _corpus({"pydicom-loop": 10.0, "tmi-api": tmi_s, "tmi-cli-w1": tmi_s, "dicognito": 15.0,
                     "deid": None})
    multi = _corpus({"cp": 1.0, "tmi-cli-w1": tmi_s / 10, "tmi-api": 1.0})
    corpora = {"small": {"tools": small}, "multiframe": {"tools": multi}}
    checks = {c["check"]: c for c in bench.targets(corpora)}
    api = checks["small: tmi.deid API loop time <= 1.33 x pydicom read+write loop"]
    assert api["met"] is met and api["ratio"] == pytest.approx(tmi_s / 10, abs=1e-3)
    assert checks["small: `tmi deid --workers 1` faster than dicognito"]["met"] is (tmi_s < 15.0)
    failed_tool = checks["small: `tmi deid --workers 1` faster than deid"]
    assert failed_tool["met"] is True and "failed" in failed_tool["note"]
    assert checks["500 MB multi-frame: `tmi deid --workers 1` time <= 2 x cp"]["met"] is (tmi_s / 10 <= 2.0)


def test_targets_not_met_without_measurements() -> None:
    small = _corpus({"pydicom-loop": 10.0, "tmi-api": None})
    checks = bench.targets({"small": {"tools": small}})
    assert checks and all(c["met"] is False for c in checks)


def test_quick_run_end_to_end(tmp_path: Path) -> None:
    """A tiny real run: corpus generated, tools run as processes, JSON + Markdown written."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.deid", "--quick", "--small-count", "6", "--corpora", "small",
         "--tools", "cp,pydicom-loop,tmi-api", "--corpus-dir", str(tmp_path / "corpus"),
         "--out-dir", str(out), "--no-install"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "deid-quick.json").read_text())
    small = report["corpora"]["small"]
    assert small["files"] == 6 and small["bytes"] > 6 * 450_000
    for tool in ("cp", "pydicom-loop"):
        res = small["tools"][tool]
        assert res["ok"], res
        assert res["outputs"] == 6 and res["median_s"] > 0 and res["peak_rss_mb"] > 0
    assert "tmi-api" in small["tools"]  # measured, or reported as failed with its error
    assert report["machine"]["cores"] and report["machine"]["cpu"]
    assert any(c["tool"] == "tmi-api" for c in report["targets"])
    assert "| pydicom-loop |" in (out / "deid-quick.md").read_text()


def test_subset_comparisons_use_time_per_instance(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"{i:02d}.dcm").write_bytes(b"x" * 1000)
    subset = bench.make_subset(src, tmp_path / "sub", 2)
    assert subset.files == 2 and sorted(p.name for p in subset.path.iterdir()) == ["00.dcm", "01.dcm"]
    assert (subset.path / "00.dcm").stat().st_ino == (src / "00.dcm").stat().st_ino  # linked, not copied
    small = {
        "pydicom-loop": {"ok": True, "files": 2000, "median_s": 20.0},
        "tmi-cli-w1": {"ok": True, "files": 2000, "median_s": 40.0},  # 20 ms per instance
        "dicognito": {"ok": True, "files": 500, "median_s": 15.0},  # 30 ms per instance
    }
    checks = {c["check"]: c for c in bench.targets({"small": {"tools": small}})}
    versus = checks["small: `tmi deid --workers 1` faster than dicognito"]
    assert versus["ratio"] == pytest.approx(2 / 3, abs=1e-3) and versus["met"] is True
    assert "500" in versus["per_instance"]


def test_peak_rss_is_the_tools_own_not_the_harness(tmp_path: Path) -> None:
    """A tiny tool must not inherit this (large) process's memory high-water mark."""
    ballast = bytearray(200_000_000)
    ballast[::4096] = b"x" * len(ballast[::4096])
    run = bench.measure(["true"], timeout_s=60, stderr_path=tmp_path / "err")
    assert run.ok
    assert run.peak_rss_mb < 20, run
    del ballast
