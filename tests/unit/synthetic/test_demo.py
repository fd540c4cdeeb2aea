"""The demo population matches its manifest's ground truth."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pydicom
import pytest

from tmi.synthetic.demo import DemoManifest, generate_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate_demo(tmp_path_factory.mktemp("demo"), seed=7)


def _one_letter_apart(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def _header_text(path: Path) -> str:
    values: list[str] = []

    def visit(_ds: pydicom.Dataset, elem: pydicom.DataElement) -> None:
        if elem.VR != "SQ":
            values.append(str(elem.value))

    pydicom.dcmread(path, stop_before_pixels=True).walk(visit)
    return "\n".join(values)


def test_files_match_the_manifest(demo: DemoManifest) -> None:
    files = sorted(p for p in demo.root.rglob("*") if p.is_file())
    assert files == sorted(i.path for i in demo.instances)
    for inst in demo.instances:
        if inst.corrupt:
            continue
        ds = pydicom.dcmread(inst.path)
        assert ds.Modality == "MG" and ds.BodyPartExamined == "BREAST"
        assert (ds.ViewPosition, ds.ImageLaterality) == (inst.view, inst.laterality)
        assert (ds.PatientID, str(ds.PatientName)) == (inst.patient_id, inst.patient_name)
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (
            inst.study_uid, inst.series_uid, inst.sop_uid)
        assert ds.AccessionNumber == inst.accession and ds.StudyDate == inst.study_date
        assert ds.BurnedInAnnotation == ("YES" if inst.burned_in else "NO")
        clinic = next(c for c in demo.clinics if c.key == inst.clinic)
        assert (ds.InstitutionName, ds.IssuerOfPatientID) == (clinic.institution, clinic.issuer)
        assert ds.pixel_array.shape == (320, 256)


def test_population_shape(demo: DemoManifest) -> None:
    assert len(demo.persons) >= 5
    studies = demo.studies()
    for views in studies.values():
        assert sorted((i.laterality, i.view) for i in views) == [("L", "CC"), ("L", "MLO"), ("R", "CC"),
                                                                  ("R", "MLO")]
    assert len({i.sop_uid for i in demo.instances}) == len(demo.instances)
    # Repeat visits, weeks apart.
    repeat = [p for p in demo.persons if p.visits >= 2]
    assert len(repeat) >= 2
    for person in repeat:
        dates = sorted({i.study_date for i in demo.instances if i.person == person.key and not i.corrupt})
        gap = datetime.strptime(dates[-1], "%Y%m%d") - datetime.strptime(dates[0], "%Y%m%d")
        assert gap.days >= 14
    # Exactly one burned-in instance and one corrupt file, both expected in quarantine.
    burned = [i for i in demo.instances if i.burned_in]
    corrupt = [i for i in demo.instances if i.corrupt]
    assert len(burned) == 1 and len(corrupt) == 1
    assert {i.path for i in demo.expected_quarantined} == {burned[0].path, corrupt[0].path}
    assert burned[0].expected_reason == "pixels.burned_in_annotation"
    assert corrupt[0].path not in demo.cstore_paths


def test_typo_case(demo: DemoManifest) -> None:
    typo = demo.typo
    assert _one_letter_apart(typo.correct_name, typo.misspelt_name)
    seen = {(i.patient_id, i.clinic, i.patient_name) for i in demo.instances
            if i.person == typo.person and not i.corrupt}
    assert seen == {(typo.patient_id, typo.clinic, typo.correct_name),
                    (typo.patient_id, typo.clinic, typo.misspelt_name)}
    misspelt = [i for i in demo.instances if i.patient_name == typo.misspelt_name]
    assert {i.study_uid for i in misspelt} == {typo.misspelt_study_uid}
    ds = pydicom.dcmread(misspelt[0].path)
    assert str(ds.PatientName) == typo.misspelt_name


def test_two_ids_case(demo: DemoManifest) -> None:
    a, b = demo.two_ids.identities
    assert a.patient_id != b.patient_id and a.issuer != b.issuer and a.institution != b.institution
    assert a.name == b.name
    headers = {}
    for inst in demo.instances:
        if inst.person == demo.two_ids.person:
            ds = pydicom.dcmread(inst.path, stop_before_pixels=True)
            headers[ds.PatientID] = (ds.IssuerOfPatientID, ds.InstitutionName, ds.PatientBirthDate)
    assert set(headers) == {a.patient_id, b.patient_id}
    assert headers[a.patient_id][2] == headers[b.patient_id][2]  # same person, same birth date
    assert headers[a.patient_id][:2] == (a.issuer, a.institution)
    assert headers[b.patient_id][:2] == (b.issuer, b.institution)


def test_corrupt_file_is_truncated(demo: DemoManifest) -> None:
    corrupt = next(i for i in demo.instances if i.corrupt)
    assert corrupt.expected_reason == "dicom.truncated"
    ds = pydicom.dcmread(corrupt.path, force=True)
    declared = int(ds.Rows) * int(ds.Columns) * 2
    assert len(ds.PixelData) < declared


def test_garbage_variant(tmp_path: Path) -> None:
    manifest = generate_demo(tmp_path, seed=3, corrupt_kind="garbage", rows=64, columns=48)
    corrupt = next(i for i in manifest.instances if i.corrupt)
    assert corrupt.expected_reason == "dicom.unparseable"
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(corrupt.path)


def test_phi_tokens_are_in_the_files(demo: DemoManifest) -> None:
    """The ground-truth tokens really occur in the headers (so a leak scan using them is meaningful)."""
    for person, tokens in demo.phi_tokens.items():
        text = "\n".join(_header_text(i.path) for i in demo.instances if i.person == person and not i.corrupt)
        missing = [t for t in tokens if t not in text]
        assert missing == [], (person, missing)


def test_deterministic_and_json(demo: DemoManifest, tmp_path: Path) -> None:
    again = generate_demo(tmp_path / "again", seed=7)
    for a, b in zip(demo.instances, again.instances, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes()
    other = generate_demo(tmp_path / "other", seed=8, rows=64, columns=48)
    assert {i.sop_uid for i in other.instances}.isdisjoint({i.sop_uid for i in demo.instances})
    out = tmp_path / "manifest.json"
    demo.write_json(out)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["counts"]["files"] == len(demo.instances)
    assert data["counts"]["expected_quarantined"] == 2
    assert data["typo"]["misspelt_name"] == demo.typo.misspelt_name


def test_population_names_never_look_like_an_alias(demo: DemoManifest) -> None:
    """The end-to-end PHI scan checks research data against every demo patient's words. Aliases draw real
    first names, so the synthetic population must not use any of them, or another patient's alias would
    read as a leak (real populations may overlap harmlessly: an alias is not linked to that person)."""
    from tmi.deid import pseudonyms

    vocabulary = [f"ALIAS-0000^{g}" for g in (*pseudonyms._FEMALE, *pseudonyms._MALE, *pseudonyms._NEUTRAL)]
    words: set[str] = set()
    for values in demo.phi_tokens.values():
        words.update(v.upper() for v in values)
    for inst in demo.instances:
        words.update(inst.patient_name.upper().replace("^", " ").split())
    clashes = sorted({w for w in words if len(w) >= 4 for alias in vocabulary if w in alias})
    assert clashes == []
