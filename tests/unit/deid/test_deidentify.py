"""The contract: what a research instance looks like, determinism, UIDs and references, the result record."""

from __future__ import annotations

import io
import re

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from tests.unit.deid.conftest import KEY, OTHER_KEY
from tests.unit.deid.helpers import Person, base_dataset, run, to_file, uid
from tmi.deid import Deidentifier, OfflinePseudonymProvider, alias_for, load_profile
from tmi.deid.pseudonyms import PSEUDONYM_RE

UID_2_25 = re.compile(r"^2\.25\.[1-9][0-9]{0,38}$")


def _read(data: bytes) -> pydicom.FileDataset:
    return pydicom.dcmread(io.BytesIO(data))


def test_written_instance_has_policy_attributes(deid: Deidentifier) -> None:
    person = Person()
    result, data = run(deid, to_file(base_dataset(person)))
    assert result.outcome == "written", (result.reason, result.detail)
    out = _read(data)
    pseudonym = result.assignment.pseudonym
    assert PSEUDONYM_RE.match(pseudonym)
    assert out.PatientID == pseudonym
    assert str(out.PatientName) == alias_for(pseudonym, "F") == result.assignment.alias
    assert out.PatientBirthDate == "19710415"  # day 15 of the birth month
    assert out.PatientAge == "052Y"  # filled from birth date and study date (2024-03-05)
    assert out.PatientSex == "F" and out.PatientWeight == 71.5  # patient characteristics retained
    assert out.StudyDate == "20240305" and out.StudyTime == "101500"  # full dates retained
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethod.startswith("TMI clinic-research")
    codes = {(i.CodeValue, i.CodingSchemeDesignator) for i in out.DeidentificationMethodCodeSequence}
    assert codes == {("113100", "DCM"), ("113106", "DCM"), ("113108", "DCM"), ("113105", "DCM")}
    assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert out.StudyDescription == "CT thorax for *"  # Clean Descriptors: kept, patient token scrubbed
    assert out.Manufacturer == "ACME Imaging"  # allow-listed, not in the table
    for gone in (
        "PatientAddress",
        "PatientTelephoneNumbers",
        "OtherPatientIDs",
        "IssuerOfPatientID",
        "PatientComments",
        "InstitutionAddress",
    ):
        assert gone not in out, gone
    assert out.AccessionNumber == "" and out.ReferringPhysicianName == ""
    assert out.InstitutionName == ""  # X/Z/D resolved to Z in the clinic profile
    assert "BurnedInAnnotation" in out
    assert out.PixelData == base_dataset(person).PixelData


def test_result_record(deid: Deidentifier) -> None:
    person = Person()
    result, data = run(deid, to_file(base_dataset(person)), calling_aet="MODALITY1")
    assert result.phi.patient_id == person.patient_id and result.phi.calling_aet == "MODALITY1"
    assert result.phi.name == person.name and result.phi.other_ids == (person.other_id,)
    assert (
        result.original.sop_instance_uid == uid(1, 1, 1)
        and result.original.accession_number == person.accession
    )
    assert UID_2_25.match(result.research.sop_instance_uid)
    assert result.research.accession_number is None
    assert result.research_key == (
        f"{result.assignment.pseudonym}/{result.research.study_instance_uid}/"
        f"{result.research.series_instance_uid}/{result.research.sop_instance_uid}.dcm"
    )
    assert result.notes == [("PatientComments", f"{person.given} prefers the left arm")]
    assert result.bytes_written == len(data)
    cat = result.catalog
    assert cat["pseudonym"] == result.assignment.pseudonym and cat["sex"] == "F" and cat["age_years"] == 52
    assert (cat["modality"], cat["rows"], cat["columns"], cat["body_part"]) == ("CT", 4, 4, "CHEST")
    assert cat["transfer_syntax"] == "1.2.840.10008.1.2.1" and cat["study_date"] == "20240305"
    assert not any(person.family in str(v) for v in cat.values())


def test_same_input_and_key_gives_identical_bytes(clinic_profile) -> None:  # type: ignore[no-untyped-def]
    data = to_file(base_dataset())
    first = run(Deidentifier(clinic_profile, KEY, OfflinePseudonymProvider(KEY)), data)[1]
    second = run(Deidentifier(clinic_profile, KEY, OfflinePseudonymProvider(KEY)), data)[1]
    assert first == second and len(first) > 0


def test_other_key_gives_other_uids_and_pseudonym(clinic_profile) -> None:  # type: ignore[no-untyped-def]
    data = to_file(base_dataset())
    a, _ = run(Deidentifier(clinic_profile, KEY, OfflinePseudonymProvider(KEY)), data)
    b, _ = run(Deidentifier(clinic_profile, OTHER_KEY, OfflinePseudonymProvider(OTHER_KEY)), data)
    assert a.research.sop_instance_uid != b.research.sop_instance_uid
    assert a.research.study_instance_uid != b.research.study_instance_uid
    assert a.assignment.pseudonym != b.assignment.pseudonym


def test_uids_remapped_everywhere_and_references_kept_consistent(deid: Deidentifier) -> None:
    # Instance 2 references instance 1 (as another image of the same series would).
    first = base_dataset(index=1)
    second = base_dataset(index=2)
    second.ReferencedImageSequence[0].ReferencedSOPInstanceUID = first.SOPInstanceUID
    _r1, d1 = run(deid, to_file(first))
    _r2, d2 = run(deid, to_file(second))
    o1, o2 = _read(d1), _read(d2)
    assert o2.ReferencedImageSequence[0].ReferencedSOPInstanceUID == o1.SOPInstanceUID
    assert o2.ReferencedImageSequence[0].ReferencedSOPClassUID == first.SOPClassUID  # well-known: kept
    assert o1.StudyInstanceUID == o2.StudyInstanceUID and o1.SeriesInstanceUID == o2.SeriesInstanceUID
    assert o1.file_meta.MediaStorageSOPInstanceUID == o1.SOPInstanceUID
    assert o1.SOPClassUID == first.SOPClassUID and o1.file_meta.MediaStorageSOPClassUID == first.SOPClassUID
    for value in (o1.SOPInstanceUID, o1.StudyInstanceUID, o1.SeriesInstanceUID, o1.FrameOfReferenceUID):
        assert UID_2_25.match(str(value)) and len(str(value)) <= 64
    assert o1.file_meta.ImplementationClassUID != pydicom.uid.PYDICOM_IMPLEMENTATION_UID


def test_uids_in_nested_sequences_depth_three(deid: Deidentifier) -> None:
    ds = base_dataset()
    level3 = Dataset()
    level3.ReferencedSOPClassUID = ds.SOPClassUID
    level3.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    level3.PatientName = "Zebulonsky^Quixotea"  # a name deep inside must be cleaned too
    level2 = Dataset()
    level2.ReferencedInstanceSequence = Sequence([level3])
    level2.SeriesInstanceUID = ds.SeriesInstanceUID
    level1 = Dataset()
    level1.ReferencedSeriesSequence = Sequence([level2])
    level1.StudyInstanceUID = ds.StudyInstanceUID
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([level1])
    result, data = run(deid, to_file(ds))
    assert result.outcome == "written", result.detail
    out = _read(data)
    l1 = out.CurrentRequestedProcedureEvidenceSequence[0]
    l2 = l1.ReferencedSeriesSequence[0]
    l3 = l2.ReferencedInstanceSequence[0]
    assert l1.StudyInstanceUID == out.StudyInstanceUID
    assert l2.SeriesInstanceUID == out.SeriesInstanceUID
    assert l3.ReferencedSOPInstanceUID == out.SOPInstanceUID
    assert l3.PatientName == ""  # Z at depth 3


def test_implicit_vr_input_keeps_its_transfer_syntax(deid: Deidentifier) -> None:
    result, data = run(deid, to_file(base_dataset(), ImplicitVRLittleEndian))
    assert result.outcome == "written", result.detail
    out = _read(data)
    assert out.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert out.PatientID == result.assignment.pseudonym
    assert out.PixelData == base_dataset().PixelData


@pytest.mark.parametrize(
    ("policy", "expected"), [("day15", "19710415"), ("july1", "19710701"), ("remove", "")]
)
def test_birth_date_policies(tmp_path, policy: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    import json
    from importlib import resources

    doc = json.loads((resources.files("tmi.deid") / "profiles" / "clinic-research.json").read_text())
    doc["patient"]["birth_date"] = policy
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    (tmp_path / "annex-e-2024b.json").write_text(
        (resources.files("tmi.deid") / "profiles" / "annex-e-2024b.json").read_text()
    )
    deid = Deidentifier(load_profile(path), KEY, OfflinePseudonymProvider(KEY))
    result, data = run(deid, to_file(base_dataset()))
    assert result.outcome == "written", result.detail
    assert _read(data).PatientBirthDate == expected


def test_existing_age_is_not_overwritten(deid: Deidentifier) -> None:
    ds = base_dataset()
    ds.PatientAge = "050Y"
    assert _read(run(deid, to_file(ds))[1]).PatientAge == "050Y"


def test_basic_profile_is_strict(basic_deid: Deidentifier) -> None:
    result, data = run(basic_deid, to_file(base_dataset()))
    assert result.outcome == "written", result.detail
    out = _read(data)
    assert "PatientWeight" not in out and out.PatientSex == ""  # no patient characteristics
    assert out.StudyDate == "" and out.SeriesDate == "19000101"  # Z, and X/D resolved to a dummy
    assert "StudyDescription" not in out  # no Clean Descriptors option: removed
    assert out.PatientBirthDate == ""
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100"]
    # The alias does not reveal the (removed) sex.
    assert str(out.PatientName) == alias_for(result.assignment.pseudonym, None)


def test_offline_pseudonym_is_stable_across_instances(deid: Deidentifier) -> None:
    a, _ = run(deid, to_file(base_dataset(index=1, study=1)))
    b, _ = run(deid, to_file(base_dataset(index=9, study=2)))
    assert a.assignment.pseudonym == b.assignment.pseudonym
    c, _ = run(deid, to_file(base_dataset(Person(patient_id="PID000001"))))
    assert c.assignment.pseudonym != a.assignment.pseudonym


def test_elements_after_pixel_data_are_processed(deid: Deidentifier) -> None:
    data = to_file(base_dataset())
    # Append a private element and trailing padding after the pixel data (explicit VR LE).
    private_creator = b"\x09\x00\x10\x00LO\x08\x00ACME 1.0"
    private_value = b"\x09\x00\x00\x10LO\x0a\x00Zebulonsky"
    padding = b"\xfc\xff\xfc\xffOB\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00"
    result, out = run(deid, data + private_creator + private_value + padding)
    assert result.outcome == "written", result.detail
    assert b"Zebulonsky" not in out and b"ACME 1.0" not in out
    ds = _read(out)
    assert 0xFFFCFFFC not in ds and ds.PixelData == base_dataset().PixelData


def test_real_given_name_equal_to_alias_given_name_is_still_scrubbed(deid: Deidentifier) -> None:
    probe, _ = run(deid, to_file(base_dataset()))
    alias_given = probe.assignment.alias.split("^")[1]
    # Same patient identifiers (same pseudonym, same alias) but the real given name equals the alias's.
    person = Person(given=alias_given.capitalize())
    ds = base_dataset(person)
    ds.SeriesDescription = f"{alias_given.capitalize()} follow-up"
    result, data = run(deid, to_file(ds))
    assert result.assignment.alias == probe.assignment.alias
    assert result.outcome == "written", result.detail
    out = _read(data)
    # The alias is re-drawn so that the real given name appears nowhere, not even as the alias.
    family, _, given = str(out.PatientName).partition("^")
    assert family == result.assignment.alias.partition("^")[0] and given != alias_given
    assert alias_given.lower() not in out.SeriesDescription.lower()
    assert alias_given.encode() not in data.upper()


def test_patient_named_like_the_manufacturer_is_never_excused(deid: Deidentifier) -> None:
    # The equipment exemption is for institution names only: a person's name inside a kept value is
    # a hit (fail closed), even when it is "only" the manufacturer's word.
    ds = base_dataset(Person(family="Acme"))
    result, _ = run(deid, to_file(ds))
    assert (result.outcome, result.reason) == ("quarantined", "phi.residual")
    assert "(0008,0070)" in result.detail


def test_institution_named_like_the_manufacturer_is_not_a_leak(deid: Deidentifier) -> None:
    ds = base_dataset(Person(institution="ACME"))
    result, data = run(deid, to_file(ds))
    assert result.outcome == "written", result.detail
    assert _read(data).Manufacturer == "ACME Imaging"


def test_modified_dates_option_shifts_consistently_per_patient(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt
    import json
    from importlib import resources

    doc = json.loads((resources.files("tmi.deid") / "profiles" / "clinic-research.json").read_text())
    doc["options"]["rtnLongFullDatesOpt"] = False
    doc["options"]["rtnLongModifDatesOpt"] = True
    (tmp_path / "p.json").write_text(json.dumps(doc))
    (tmp_path / "annex-e-2024b.json").write_text(
        (resources.files("tmi.deid") / "profiles" / "annex-e-2024b.json").read_text()
    )
    deid = Deidentifier(load_profile(tmp_path / "p.json"), KEY, OfflinePseudonymProvider(KEY))
    first = base_dataset(index=1)
    second = base_dataset(index=2, study=2)
    second.StudyDate = "20240405"
    a, da = run(deid, to_file(first))
    b, db = run(deid, to_file(second))
    assert a.outcome == b.outcome == "written", (a.detail, b.detail)
    oa, ob = _read(da), _read(db)
    shift_a = dt.date(2024, 3, 5) - dt.datetime.strptime(oa.StudyDate, "%Y%m%d").date()
    shift_b = dt.date(2024, 4, 5) - dt.datetime.strptime(ob.StudyDate, "%Y%m%d").date()
    assert shift_a == shift_b and shift_a.days != 0  # same patient, same offset: intervals preserved
    assert oa.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "113107" in {i.CodeValue for i in oa.DeidentificationMethodCodeSequence}
    assert oa.StudyTime == "101500"  # times are kept
