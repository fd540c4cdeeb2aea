"""``tmi deid`` on a folder tree whose names carry PHI: layout, report, exit code, key file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pydicom
import pytest

from adapters.cli import deid as cli_deid
from adapters.cli import main
from tests.unit.deid.helpers import Person, base_dataset, to_file

_REAL_PROCESS = cli_deid._process  # before any monkeypatching

PHI_DIR = "Zebulonsky Quixotea 19710423 PID778899"


def _tree(root: Path) -> None:
    folder = root / PHI_DIR / "CT thorax"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"Zebulonsky_{i}.dcm").write_bytes(to_file(base_dataset(index=i + 1)))
    burned = base_dataset(index=9)
    burned.BurnedInAnnotation = "YES"
    (folder / "Zebulonsky_burned.dcm").write_bytes(to_file(burned))
    (root / PHI_DIR / "notes.txt").write_text("not dicom")
    (root / PHI_DIR / "empty.dcm").write_bytes(b"")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_folder_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str) -> None:
    monkeypatch.setenv("TMI_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("TMI_DEID_KEY", raising=False)
    monkeypatch.delenv("TMI_DEID_KEY_FILE", raising=False)
    src, dst, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    _tree(src)
    code = main(["deid", str(src), str(dst), "--report", str(report), "--workers", workers])
    assert code == 0

    key_file = tmp_path / "run" / "deid.key"
    assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600

    written = sorted(p for p in dst.rglob("*") if p.is_file())
    assert len(written) == 3
    person = Person()
    for path in written:
        rel = path.relative_to(dst)
        pseudonym, study, series, name = rel.parts
        assert pseudonym.startswith("TMI-") and study.startswith("2.25.") and series.startswith("2.25.")
        assert name.startswith("2.25.") and name.endswith(".dcm")
        assert "Zebulonsky" not in str(rel) and "19710423" not in str(rel)
        data = path.read_bytes()
        assert person.family.encode() not in data and person.patient_id.encode() not in data
        assert pydicom.dcmread(path).SOPInstanceUID == name[: -len(".dcm")]
    assert not any(p.name.startswith(".tmi-partial") for p in dst.rglob("*"))

    doc = json.loads(report.read_text())
    assert doc["totals"]["inputs"] == 6
    assert (
        doc["totals"]["written"] == 3 and doc["totals"]["quarantined"] == 3 and doc["totals"]["errors"] == 0
    )
    assert doc["totals"]["by_reason"] == {
        "dicom.empty": 1,
        "dicom.unparseable": 1,
        "pixels.burned_in_annotation": 1,
    }
    by_input = {Path(e["input"]).name: e for e in doc["inputs"]}
    assert by_input["Zebulonsky_burned.dcm"]["reason"] == "pixels.burned_in_annotation"
    assert by_input["Zebulonsky_0.dcm"]["outcome"] == "written"
    assert (dst / by_input["Zebulonsky_0.dcm"]["output"]).exists()

    # Same key again: same names (deterministic), and the key is reused, not recreated.
    before = key_file.read_text()
    assert main(["deid", str(src), str(tmp_path / "again"), "--workers", workers]) == 0
    assert key_file.read_text() == before
    again = sorted(str(p.relative_to(tmp_path / "again")) for p in (tmp_path / "again").rglob("*.dcm"))
    assert again == sorted(str(p.relative_to(dst)) for p in written)


def test_cli_key_file_and_single_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMI_DEID_KEY", raising=False)
    monkeypatch.delenv("TMI_DEID_KEY_FILE", raising=False)
    key = tmp_path / "k.key"
    key.write_text("00" * 32)
    os.chmod(key, 0o600)
    src = tmp_path / "one.dcm"
    src.write_bytes(to_file(base_dataset()))
    assert main(["deid", str(src), str(tmp_path / "o"), "--key-file", str(key), "--profile", "basic"]) == 0
    (out,) = list((tmp_path / "o").rglob("*.dcm"))
    assert pydicom.dcmread(out).DeidentificationMethod.startswith("TMI basic")


def test_cli_bad_profile_is_a_usage_error(tmp_path: Path) -> None:
    src = tmp_path / "one.dcm"
    src.write_bytes(to_file(base_dataset()))
    assert main(["deid", str(src), str(tmp_path / "o"), "--profile", "no-such-profile"]) == 2
    assert main(["deid", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2


def test_cli_process_does_not_load_pixel_backends_and_writes_the_same_bytes(tmp_path: Path) -> None:
    """``tmi deid`` hides numpy/Pillow from pydicom to start fast; the output must not change."""
    import subprocess
    import sys

    import numpy  # noqa: F401 - this (test) process has the pixel back-ends loaded

    from tmi.deid import Deidentifier, OfflinePseudonymProvider, load_profile

    key = bytes(range(32))
    key_file = tmp_path / "k.key"
    key_file.write_text(key.hex())
    os.chmod(key_file, 0o600)
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.dcm").write_bytes(to_file(base_dataset(index=1)))
    probe = (
        "import sys\n"
        "from adapters.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "loaded = [m for m in ('numpy', 'PIL') if m in sys.modules]\n"
        "import numpy  # still importable afterwards\n"
        "print(code, loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, "deid", str(src), str(tmp_path / "cli"), "--key-file", str(key_file),
         "--profile", "clinic-research", "--workers", "1"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[3],
    )
    assert out.stdout.strip().splitlines()[-1] == "0 []"

    (cli_file,) = list((tmp_path / "cli").rglob("*.dcm"))
    deid = Deidentifier(load_profile("clinic-research"), key, OfflinePseudonymProvider(key))
    with open(src / "a.dcm", "rb") as fin, open(tmp_path / "api.dcm", "wb") as fout:
        assert deid.deidentify(fin, fout).outcome == "written"
    assert cli_file.read_bytes() == (tmp_path / "api.dcm").read_bytes()


def test_chunk_size_gives_every_worker_several_chunks() -> None:
    chunk_size = cli_deid.chunk_size
    assert chunk_size(2, 2) == 1  # two large files: one each
    assert chunk_size(20, 2) == 2
    assert chunk_size(2000, 2) == 4  # thousands of small files: capped
    assert chunk_size(0, 8) == 1


def _slow_and_traced(task: Any) -> dict[str, Any]:
    """``_process`` that takes 0.5 s (the other worker takes the next file meanwhile, if it may) and says
    which process ran it. Module level: the pool pickles it by name."""
    import time

    time.sleep(0.5)
    return {**_REAL_PROCESS(task), "pid": os.getpid()}


def test_cli_two_files_two_workers_use_both_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two inputs with --workers 2 go to two processes (a chunk of 4 used to give both to one)."""
    monkeypatch.setattr(cli_deid, "_process", _slow_and_traced)  # the forked workers inherit it
    src, dst, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    src.mkdir()
    for i in range(2):
        (src / f"{i}.dcm").write_bytes(to_file(base_dataset(index=i + 1)))
    key = tmp_path / "k.key"
    key.write_text("00" * 32)
    key.chmod(0o600)
    assert main(["deid", str(src), str(dst), "--key-file", str(key), "--report", str(report),
                 "--workers", "2"]) == 0
    entries = json.loads(report.read_text())["inputs"]
    assert [e["outcome"] for e in entries] == ["written", "written"]
    assert len({e["pid"] for e in entries}) == 2
