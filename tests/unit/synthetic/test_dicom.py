"""The synthetic instance builders write valid, PHI-rich, deterministic DICOM."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import generate_fragmented_frames
from pydicom.uid import JPEGBaseline8Bit, JPEGExtended12Bit

from tmi.synthetic import dicom as synth


def _dcmdump_ok(path: Path) -> None:
    """dcmtk parses the whole file (skipped where dcmtk is not installed)."""
    if shutil.which("dcmdump") is None:
        pytest.skip("dcmtk not installed")
    proc = subprocess.run(["dcmdump", "-M", str(path)], capture_output=True, check=False)
    stderr = proc.stderr.decode("latin-1")
    assert proc.returncode == 0, stderr
    assert "E:" not in stderr and "W:" not in stderr, stderr


def _all_values(ds: pydicom.Dataset) -> list[str]:
    values: list[str] = []

    def visit(d: pydicom.Dataset, elem: pydicom.DataElement) -> None:
        if elem.VR not in ("SQ", "OB", "OW") and elem.value is not None:
            values.append(str(elem.value))

    ds.walk(visit)
    return values


@pytest.mark.parametrize("modality", ["MG", "CR", "DX"])
def test_small_instance_is_valid_and_phi_rich(tmp_path: Path, modality: str) -> None:
    ds = synth.small_instance(5, seed=3, modality=modality)
    path = tmp_path / "small.dcm"
    size = synth.write_dataset(ds, path)
    assert 450_000 < size < 650_000
    back = pydicom.dcmread(path)
    assert back.Modality == modality
    assert back.SOPClassUID == synth.SOP_CLASS[modality]
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    pixels = back.pixel_array
    assert pixels.shape == (512, 512)
    assert int(pixels.max()) < 2 ** int(back.BitsStored)
    assert int(pixels.min()) < int(pixels.max())  # an image, not a flat field
    # The PHI a clinic sends is there, including at depth 3 and in private tags.
    for keyword in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientAddress",
                    "PatientTelephoneNumbers", "AccessionNumber", "ReferringPhysicianName", "OperatorsName",
                    "PerformingPhysicianName", "InstitutionName", "StationName", "PatientComments",
                    "AdditionalPatientHistory", "OtherPatientIDsSequence", "RequestAttributesSequence"):
        assert keyword in back and back[keyword].value, keyword
    qualifiers = back.OtherPatientIDsSequence[0].IssuerOfPatientIDQualifiersSequence[0]
    depth3 = qualifiers.AssigningFacilitySequence[0]
    assert back.PatientName.family_name.title() in depth3.LocalNamespaceEntityID
    assert back.private_block(0x0019, "ACME MAMMO 1.0")[0x04].value == back.PatientID
    values = _all_values(back)
    assert sum(back.PatientID in v for v in values) >= 4  # copied into comments, private tags, etc.
    _dcmdump_ok(path)


def test_small_instances_are_deterministic_and_distinct(tmp_path: Path) -> None:
    a = synth.write_dataset(synth.small_instance(9, seed=1), tmp_path / "a.dcm")
    b = synth.write_dataset(synth.small_instance(9, seed=1), tmp_path / "b.dcm")
    assert a == b
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()
    other_seed = synth.small_instance(9, seed=2)
    other_index = synth.small_instance(10, seed=1)
    first = pydicom.dcmread(tmp_path / "a.dcm")
    assert other_seed.SOPInstanceUID != first.SOPInstanceUID
    assert other_index.SOPInstanceUID != first.SOPInstanceUID
    # Four images per study: index 9 and 10 share a study but not a series/instance.
    assert other_index.StudyInstanceUID == first.StudyInstanceUID
    assert other_index.PatientID == first.PatientID


def test_large_mg_is_about_27_mb(tmp_path: Path) -> None:
    path = tmp_path / "mg.dcm"
    size = synth.write_dataset(synth.large_mg_instance(seed=4), path)
    assert 26_000_000 < size < 29_000_000
    back = pydicom.dcmread(path, stop_before_pixels=True)
    assert (back.Rows, back.Columns, back.BitsAllocated) == (4096, 3328, 16)
    assert back.ViewPosition in ("CC", "MLO") and back.BodyPartExamined == "BREAST"


def test_streamed_multiframe_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "tomo.dcm"
    size = synth.write_multiframe_streaming(path, seed=2, frames=3, rows=64, columns=80)
    back = pydicom.dcmread(path)
    assert back.NumberOfFrames == 3
    assert len(back.PixelData) == 3 * 64 * 80 * 2
    assert back.pixel_array.shape == (3, 64, 80)
    assert len(back.PerFrameFunctionalGroupsSequence) == 3
    assert back.SOPClassUID == synth.SOP_CLASS["BTO"]
    assert size == path.stat().st_size
    _dcmdump_ok(path)


MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    def vm_hwm_kb():  # this process's own peak RSS; ru_maxrss would include the parent's (fork + exec)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")
    from tmi.synthetic.dicom import write_multiframe_streaming
    baseline = vm_hwm_kb()
    size = write_multiframe_streaming(Path(sys.argv[1]), seed=1, frames=int(sys.argv[2]),
                                      rows=1024, columns=1280)
    peak = vm_hwm_kb()
    print(json.dumps({"size": size, "baseline_kb": baseline, "peak_kb": peak}))
""")


def test_streamed_multiframe_memory_stays_flat(tmp_path: Path) -> None:
    """Writing a 150 MB file must not hold it: peak RSS grows by far less than the file size."""
    results = []
    for frames in (6, 60):  # ~16 MB and ~157 MB
        target = tmp_path / f"t{frames}.dcm"
        proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(target), str(frames)],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout))
        (tmp_path / f"t{frames}.dcm").unlink()
    small, big = results
    assert big["size"] > 150_000_000
    growth_mb = (big["peak_kb"] - big["baseline_kb"]) / 1024
    assert growth_mb < 40, results
    # Ten times the frames, (almost) the same peak.
    assert big["peak_kb"] - small["peak_kb"] < 10 * 1024, results


@pytest.mark.parametrize(("codec", "tsyntax"), [("jpeg-extended", JPEGExtended12Bit),
                                                ("jpeg-baseline", JPEGBaseline8Bit)])
def test_encapsulated_instance(tmp_path: Path, codec: str, tsyntax: str) -> None:
    path = tmp_path / "enc.dcm"
    synth.write_dataset(synth.encapsulated_instance(1, seed=5, codec=codec, frames=2), path)
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == tsyntax
    frames = list(generate_fragmented_frames(back.PixelData, number_of_frames=2))
    assert len(frames) == 2
    assert frames[0][0][:2] == b"\xff\xd8"  # JPEG SOI marker
    assert back.PatientName and back.PatientID
    _dcmdump_ok(path)


def test_encapsulated_streaming(tmp_path: Path) -> None:
    path = tmp_path / "enc-mf.dcm"
    synth.write_encapsulated_streaming(path, seed=5, frames=7)
    back = pydicom.dcmread(path)
    assert back.NumberOfFrames == 7
    frames = list(generate_fragmented_frames(back.PixelData, number_of_frames=7))
    assert len(frames) == 7 and all(f[0][:2] == b"\xff\xd8" for f in frames)
    _dcmdump_ok(path)


@pytest.mark.parametrize("charset", [synth.LATIN1, synth.UTF8, synth.JAPANESE])
def test_character_sets_round_trip(tmp_path: Path, charset: str) -> None:
    non_ascii = 0
    for index in range(0, 64, 8):  # eight patients
        ds = synth.small_instance(index, seed=11, charset=charset, rows=16, columns=16)
        path = tmp_path / f"{index}.dcm"
        synth.write_dataset(ds, path)
        back = pydicom.dcmread(path)
        assert str(back.PatientName) == str(ds.PatientName)
        non_ascii += not str(back.PatientName).isascii()
        if charset == synth.JAPANESE:
            assert back.SpecificCharacterSet == ["", "ISO 2022 IR 87"]
            assert back.PatientName.ideographic and back.PatientName.phonetic
            assert str(back.OperatorsName).isascii()  # other text folded to the default repertoire
        else:
            assert back.SpecificCharacterSet == charset
        _dcmdump_ok(path)
    assert non_ascii >= 2  # the names really exercise the character set


def test_phi_tokens_cover_pn_component_groups() -> None:
    import random

    patient = synth.random_patient(random.Random(1), charset=synth.JAPANESE)
    tokens = patient.phi_tokens()
    kanji_family = patient.ideographic.split("^")[0]
    assert kanji_family in tokens and patient.phonetic.split("^")[0] in tokens
    assert patient.name.startswith(f"{patient.family}^{patient.given}=")
