"""In-process loops that ``bench.deid`` times as separate processes (one per tool and run).

Run as a script so that either interpreter can execute it — the project's ``.venv`` (pydicom loop,
``tmi.deid`` API loop) or the bench-only ``bench/.venv-tools`` (pydicom/deid)::

    python bench/_runners.py pydicom-loop SRC DST
    python bench/_runners.py tmi-api SRC DST --key-file K [--profile clinic-research]
    python bench/_runners.py deid-api SRC DST

Each loop walks SRC in sorted order, handles one file at a time (the shape of the "pure-Python floor") and
prints one JSON line with counts. Only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Run as a script, this file's folder (bench/) is sys.path[0], and bench/deid.py would shadow the
# third-party ``deid`` package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)


def _files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file())


def pydicom_loop(src: Path, dst: Path) -> dict[str, int]:
    """``dcmread`` + ``save_as`` per file: the floor any pydicom-based de-identifier pays."""
    import pydicom

    count = 0
    for path in _files(src):
        ds = pydicom.dcmread(path)
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(out)
        count += 1
    return {"files": count, "written": count}


def tmi_api(src: Path, dst: Path, key_file: Path, profile: str) -> dict[str, int]:
    """The ``tmi.deid`` Python API in the same loop shape (stream in, stream out, per file)."""
    from tmi.deid import Deidentifier, OfflinePseudonymProvider, load_key, load_profile

    key = load_key(key_file)
    deid = Deidentifier(load_profile(profile), key, pseudonyms=OfflinePseudonymProvider(key))
    counts = {"files": 0, "written": 0, "quarantined": 0}
    dst.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(_files(src)):
        out = dst / f"{i:06d}.dcm"
        with path.open("rb") as fin, out.open("wb") as fout:
            result = deid.deidentify(fin, fout)
        counts["files"] += 1
        if result.outcome == "written":
            counts["written"] += 1
        else:
            counts["quarantined"] += 1
            out.unlink()
    return counts


def deid_api(src: Path, dst: Path) -> dict[str, int]:
    """pydicom/deid with its default recipe, through its documented ``replace_identifiers`` API."""
    from deid.dicom import get_files, replace_identifiers

    files = list(get_files(str(src)))
    dst.mkdir(parents=True, exist_ok=True)
    done = replace_identifiers(dicom_files=files, save=True, output_folder=str(dst), overwrite=True)
    return {"files": len(files), "written": len(done)}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run one loop, print its counts as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=["pydicom-loop", "tmi-api", "deid-api"])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--key-file", type=Path)
    parser.add_argument("--profile", default="clinic-research")
    args = parser.parse_args(argv)
    if args.tool == "pydicom-loop":
        counts = pydicom_loop(args.src, args.dst)
    elif args.tool == "tmi-api":
        counts = tmi_api(args.src, args.dst, args.key_file, args.profile)
    else:
        counts = deid_api(args.src, args.dst)
    sys.stdout.write(json.dumps(counts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
