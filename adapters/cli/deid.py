"""``tmi deid SRC DST``: de-identify files into ``DST/<pseudonym>/<study>/<series>/<sop>.dcm``.

Input names are never reused (folder and file names may themselves carry PHI): every output path is
built from research identifiers only. ``--report`` writes a JSON document with every input's outcome
(written path, or quarantined with its reason) and totals; because it lists the *input* paths it is a
confidential, clinic-side document. Exit codes: 0 when every input was written or quarantined with a
reason, 2 on usage/configuration errors, 3 when an input hit an internal error (see the report).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INTERNAL = 3

_DEID: Any = None  # the per-process Deidentifier (set by _init_worker)
_DST: Path | None = None

# Optional packages that pydicom imports eagerly when present: its pixel-decoding back-ends (numpy,
# Pillow) and its test-data downloader (requests, tqdm). ``tmi deid`` never decodes pixel data (it copies
# the bytes) nor downloads test data, so pydicom has no use for them in this process; importing them is
# ~0.3 s of the command's start-up, as long as copying one 500 MB file. (The progress bar imports tqdm
# itself, afterwards, when stderr is a terminal.)
PYDICOM_EXTRAS_UNUSED_HERE: tuple[str, ...] = ("numpy", "PIL", "requests", "tqdm")


def import_pydicom_lean() -> bool:
    """Import pydicom with :data:`PYDICOM_EXTRAS_UNUSED_HERE` hidden; True when they were hidden.

    Only the first import of pydicom in a process can be made lean: when pydicom (or one of those
    packages) is already loaded (a test process, the pipeline worker) nothing changes. They are hidden
    only while pydicom imports (``sys.modules[name] = None`` makes ``import name`` raise
    ImportError, which pydicom treats as "not installed"), then unhidden, so code loaded later may
    still import numpy; pydicom itself keeps treating them as absent, which is what de-identification
    wants: it reads and writes headers and copies pixel bytes, and never calls ``pixel_array``.
    """
    if "pydicom" in sys.modules or any(name in sys.modules for name in PYDICOM_EXTRAS_UNUSED_HERE):
        return False
    for name in PYDICOM_EXTRAS_UNUSED_HERE:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import pydicom  # noqa: F401
    finally:
        for name in PYDICOM_EXTRAS_UNUSED_HERE:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return True


def register(subparsers: Any) -> None:
    """Register the ``deid`` subcommand."""
    parser = subparsers.add_parser(
        "deid",
        help="de-identify DICOM files (a file or a folder tree) into a research layout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", type=Path, help="input file or folder (searched recursively)")
    parser.add_argument("dst", type=Path, help="output folder")
    parser.add_argument(
        "--profile", default=None, help="profile name (clinic-research, basic) or path to a profile JSON file"
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="key file (hex); default: TMI_DEID_KEY_FILE / TMI_DEID_KEY, else .run/deid.key (created)",
    )
    parser.add_argument("--report", type=Path, default=None, help="write a JSON report of every input here")
    parser.add_argument(
        "--workers", type=int, default=0, help="worker processes (default: number of CPUs; 1 = in-process)"
    )
    parser.add_argument("--calling-aet", default=None, help="AE title of the sender (pseudonym namespace)")
    parser.set_defaults(func=run)


def iter_inputs(src: Path) -> Iterator[Path]:
    """Every regular file under ``src`` (or ``src`` itself), in a stable order."""
    if src.is_file():
        yield src
        return
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file():
                yield path


def _init_worker(profile_source: str, key: bytes, dst: str) -> None:
    global _DEID, _DST
    from tmi.deid import Deidentifier, OfflinePseudonymProvider, load_profile

    _DEID = Deidentifier(load_profile(profile_source), key, OfflinePseudonymProvider(key))
    _DST = Path(dst)


def _process(task: tuple[str, str | None]) -> dict[str, Any]:
    path_text, calling_aet = task
    assert _DEID is not None and _DST is not None
    entry: dict[str, Any] = {"input": path_text}
    tmp_path: str | None = None
    try:
        with (
            open(path_text, "rb") as src,
            tempfile.NamedTemporaryFile(dir=_DST, prefix=".tmi-partial-", suffix=".dcm", delete=False) as tmp,
        ):
            tmp_path = tmp.name
            result = _DEID.deidentify(src, tmp, calling_aet=calling_aet)
        entry["outcome"] = result.outcome
        if result.outcome == "written":
            target = _DST / result.research_key
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_path, target)
            tmp_path = None
            entry["output"] = result.research_key
            entry["bytes"] = result.bytes_written
            entry["pseudonym"] = result.assignment.pseudonym if result.assignment else None
        else:
            entry["reason"] = result.reason
            entry["detail"] = result.detail
    except Exception as exc:  # noqa: BLE001 - one bad input must not stop the batch; reported as error
        # Class name only: exception messages from parsers may quote values (PHI).
        log.error("internal error on one input: %s", exc.__class__.__name__)
        entry["outcome"] = "error"
        entry["reason"] = "internal.error"
        entry["detail"] = f"{exc.__class__.__name__}"
    finally:
        if tmp_path is not None:
            try:
                os.unlink(tmp_path)
            except FileNotFoundError:
                pass
    return entry


class _NoProgress:
    """Stands in for a progress bar when stderr is not a terminal (scripts, CI, benchmarks)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int) -> Any:
    """A tqdm bar on a terminal; tqdm is not even imported otherwise (it is ~30 ms of start-up)."""
    if not sys.stderr.isatty():
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="file", file=sys.stderr)


def chunk_size(tasks: int, workers: int) -> int:
    """Files handed to a worker process at a time: up to 4 (less inter-process traffic for thousands of
    small files), but small enough that every worker gets several chunks — with 2 large files and 2
    workers a chunk of 4 would give both files to one process and leave the other idle."""
    return max(1, min(4, tasks // (workers * 4)))


def _settings() -> Any:
    """The settings object, imported only when an option was not given (pydantic-settings costs ~0.3 s)."""
    from tmi.settings import get_settings

    return get_settings()


def run(args: argparse.Namespace) -> int:
    """Run ``tmi deid``; see the module docstring for the exit codes."""
    import_pydicom_lean()
    from tmi.deid import load_or_create_key, load_profile

    # pydicom logs the offending *values* of malformed elements at WARNING: they may be PHI.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    src: Path = args.src
    dst: Path = args.dst
    if not src.exists():
        print(f"tmi deid: {src} does not exist", file=sys.stderr)
        return 2
    profile_source = args.profile or _settings().deid_profile
    load_profile(profile_source)  # validate before starting workers (ConfigurationError -> exit 2)
    key_file = args.key_file or _settings().deid_key_file
    key, key_path, created = load_or_create_key(key_file)
    if created:
        print(
            f"tmi deid: created a new de-identification key at {key_path} (mode 0600). Keep it: the same key "
            "is needed to map later arrivals to the same research UIDs and pseudonyms (docs/keys.md).",
            file=sys.stderr,
        )
    dst.mkdir(parents=True, exist_ok=True)
    inputs = [str(p) for p in iter_inputs(src)]
    dst_resolved = dst.resolve()
    inputs = [p for p in inputs if dst_resolved not in Path(p).resolve().parents]
    workers = args.workers if args.workers and args.workers > 0 else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(inputs) or 1))
    started = time.time()
    entries: list[dict[str, Any]] = []
    tasks = [(p, args.calling_aet) for p in inputs]
    bar = _progress_bar(len(tasks))
    try:
        if workers == 1:
            _init_worker(profile_source, key, str(dst))
            for task in tasks:
                entries.append(_process(task))
                bar.update(1)
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            init_args = (profile_source, key, str(dst))
            with ctx.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
                for entry in pool.imap_unordered(_process, tasks, chunksize=chunk_size(len(tasks), workers)):
                    entries.append(entry)
                    bar.update(1)
    finally:
        bar.close()
    order = {p: i for i, p in enumerate(inputs)}
    entries.sort(key=lambda e: order.get(e["input"], 0))
    elapsed = time.time() - started
    totals: dict[str, Any] = {
        "inputs": len(entries),
        "written": sum(1 for e in entries if e["outcome"] == "written"),
        "quarantined": sum(1 for e in entries if e["outcome"] == "quarantined"),
        "errors": sum(1 for e in entries if e["outcome"] == "error"),
        "bytes_written": sum(int(e.get("bytes", 0)) for e in entries),
        "seconds": round(elapsed, 3),
    }
    reasons: dict[str, int] = {}
    for e in entries:
        if e["outcome"] != "written":
            reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    totals["by_reason"] = dict(sorted(reasons.items()))
    if args.report:
        report = {
            "tool": "tmi deid",
            "profile": profile_source,
            "key_file": str(key_path) if key_path else "environment",
            "output": str(dst),
            "totals": totals,
            "inputs": entries,
        }
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(
        f"tmi deid: {totals['inputs']} input(s): {totals['written']} written, "
        f"{totals['quarantined']} quarantined, {totals['errors']} error(s) in {elapsed:.1f}s",
        file=sys.stderr,
    )
    for reason, count in totals["by_reason"].items():
        print(f"  {reason}: {count}", file=sys.stderr)
    return EXIT_INTERNAL if totals["errors"] else EXIT_OK
