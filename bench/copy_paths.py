"""Pixel-copy experiment: ``python -m bench.copy_paths`` (``make bench-copy``).

``tmi deid`` copies a large instance's pixel data from the source file to the output, after the rewritten
header, with ``os.copy_file_range`` (``tmi.deid.stream._kernel_copy``). The destination offset is wherever
the new header ends, so it rarely shares the source's position within a page, and that copy is slower
than ``cp``'s whole-file copy when everything goes well. This script keeps the evidence for the choice: it
times, on the deid benchmark's multi-frame corpus (``bench/corpus/multiframe/``, 2 x 500 MB, made by
``make bench-deid``), the ways tried of copying the pixel data:

* ``cp-whole-file``: ``copy_file_range`` of the whole file, offset 0 to offset 0 (what ``cp`` does);
* ``tmi-cfr-from-pixels``: ``copy_file_range`` from the pixel offset to a header-sized destination offset
  at another position within the page (what ``tmi deid`` does);
* ``cfr-aligned-first-chunk``: the same with the destination at the source's page position and the first
  call ending on a 64 KB destination boundary;
* ``pwrite-1MB-aligned`` / ``pwrite-64KB``: ``preadv`` into one buffer and ``pwrite`` at 64 KB-aligned
  (1 MB chunks) or page-aligned (64 KB chunks) destination offsets.

Each measurement copies every file (``--files``) after deleting the previous output and syncing; the
methods run ``--rounds`` times each, in a random order per round (on this VM a method's time depends on
what ran before it). Results (median, mean, min, max seconds) go to ``bench/results/copy-paths.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")
ALIGN = 64 * 1024


def _pixel_offset(path: Path) -> int:
    """Where the pixel data value starts (the de-identifier's own locator)."""
    import pydicom

    from tmi.deid.stream import locate_pixel_element

    with path.open("rb") as fp:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
        implicit = ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
        span = locate_pixel_element(fp, fp.tell(), path.stat().st_size, implicit, True)
    if span is None:
        raise SystemExit(f"{path}: no pixel data element after the header")
    return span.value_start


def _cfr(src: int, dst: int, offset: int, position: int, count: int, first: int = 0) -> int:
    done = 0
    while done < count:
        want = first - done if done < first else count - done
        n = os.copy_file_range(src, dst, want, offset + done, position + done)
        if n == 0:
            break
        done += n
    return done


def _pwrite(src: int, dst: int, offset: int, position: int, count: int, chunk: int, align: int) -> int:
    buffer = memoryview(bytearray(chunk))
    done, first = 0, -position % align
    while done < count:
        want = min(count - done, first - done if done < first else chunk)
        got = os.preadv(src, [buffer[:want]], offset + done)
        if got == 0:
            break
        done += os.pwrite(dst, buffer[:got], position + done)
    return done


def _measure(sources: list[tuple[Path, int]], folder: Path, method: str) -> float:
    """Delete the previous output, sync, then time copying every source with ``method``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.sync()
    elapsed = 0.0
    for index, (source, pixel) in enumerate(sources):
        elapsed += _copy_one(source, folder / f"out-{index}.dcm", method, pixel)
    return elapsed


def _copy_one(source: Path, out: Path, method: str, pixel: int) -> float:
    same = pixel % PAGE + PAGE  # a header ending at the source's position within the page
    other = same + 333
    size = source.stat().st_size
    with source.open("rb") as fin, out.open("wb") as fout:
        src, dst = fin.fileno(), fout.fileno()
        started = time.perf_counter()
        if method == "cp-whole-file":
            done, want = _cfr(src, dst, 0, 0, size), size
        else:
            position = same if method == "cfr-aligned-first-chunk" else other
            os.pwrite(dst, b"\0" * position, 0)
            want = size - pixel
            if method == "tmi-cfr-from-pixels":
                done = _cfr(src, dst, pixel, position, want)
            elif method == "cfr-aligned-first-chunk":
                done = _cfr(src, dst, pixel, position, want, first=-position % ALIGN)
            elif method == "pwrite-1MB-aligned":
                done = _pwrite(src, dst, pixel, position, want, 1 << 20, ALIGN)
            else:
                done = _pwrite(src, dst, pixel, position, want, 64 * 1024, PAGE)
        elapsed = time.perf_counter() - started
    if done != want:
        raise SystemExit(f"{method}: copied {done} of {want} bytes")
    return elapsed


METHODS = ("cp-whole-file", "tmi-cfr-from-pixels", "cfr-aligned-first-chunk", "pwrite-1MB-aligned",
           "pwrite-64KB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=BENCH / "corpus" / "multiframe",
                        help="folder of multi-frame files (make bench-deid creates it)")
    parser.add_argument("--files", type=int, default=2, help="files copied per measurement (as tmi deid's"
                        " benchmark: 2 x 500 MB)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "copy-paths.json")
    args = parser.parse_args(argv)
    files = sorted(args.corpus.glob("*.dcm"))[:args.files]
    if len(files) < args.files:
        raise SystemExit(f"{args.corpus} has fewer than {args.files} files: run `make bench-deid`")
    sources = [(path, _pixel_offset(path)) for path in files]
    rng = random.Random(args.seed)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    folder = args.corpus.parent / "copy-paths.tmp"
    try:
        for round_no in range(args.rounds):
            order = list(METHODS)
            rng.shuffle(order)
            for method in order:
                times[method].append(_measure(sources, folder, method))
            print(f"round {round_no + 1}/{args.rounds}: "
                  + ", ".join(f"{m} {times[m][-1]:.2f}" for m in METHODS), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result: dict[str, Any] = {
        "files": [{"bytes": path.stat().st_size, "pixel_offset": pixel} for path, pixel in sources],
        "rounds": args.rounds,
        "order": "random per round", "seed": args.seed,
        "seconds": {m: {"median": round(statistics.median(v), 3), "mean": round(statistics.mean(v), 3),
                        "min": round(min(v), 3), "max": round(max(v), 3), "runs": [round(x, 3) for x in v]}
                    for m, v in times.items()},
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for m, row in result["seconds"].items():
        print(f"{m:24s} median {row['median']:.3f} s  mean {row['mean']:.3f}  "
              f"(min {row['min']:.3f}, max {row['max']:.3f})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
