"""Character sets: Latin-1, UTF-8, ISO 2022 (Japanese, Korean), single-byte sets, PN component groups."""

from __future__ import annotations

import io
import warnings

import pydicom
import pytest
from pydicom.data import get_charset_files

from tests.unit.deid.helpers import run, uid
from tmi.deid import Deidentifier

FILES = {
    "chrFren.dcm": "Buc",  # ISO_IR 100
    "chrGerm.dcm": "Äneas",  # ISO_IR 100
    "chrX1.dcm": "小東",  # ISO_IR 192 (UTF-8), three component groups
    "chrH31.dcm": "山田",  # ISO 2022 IR 87 (Japanese), alphabetic=ideographic=phonetic
    "chrH32.dcm": "山田",  # ISO 2022 IR 13 + IR 87 (half-width katakana)
    "chrJapMulti.dcm": "やまだ",  # ISO 2022 IR 87
    "chrI2.dcm": "吉洞",  # ISO 2022 IR 149 (Korean)
    "chrKoreanMulti.dcm": "김희중",
    "chrGreek.dcm": "Διονυσιος",  # ISO_IR 126
    "chrRuss.dcm": "Люкceмбypг",  # ISO_IR 144
    "chrArab.dcm": "قباني",  # ISO_IR 127
    "chrHbrw.dcm": "שרון",  # ISO_IR 138
    "chrX2.dcm": "小东",  # GB18030
}


def _prepare(name: str, token: str) -> tuple[bytes, pydicom.FileDataset]:
    (path,) = get_charset_files(name)
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "NO"  # the samples are OT: burn-in prone unless marked
    ds.SOPInstanceUID = ds.get("SOPInstanceUID") or uid(7, 7, 7)
    ds.StudyInstanceUID = ds.get("StudyInstanceUID") or uid(7)
    ds.SeriesInstanceUID = ds.get("SeriesInstanceUID") or uid(7, 7)
    ds.SOPClassUID = ds.get("SOPClassUID") or "1.2.840.10008.5.1.4.1.1.7"
    ds.PatientID = ds.get("PatientID") or "CHARSET-PATIENT"
    ds.StudyDescription = f"Study of {token} (follow-up)"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buf)
    return buf.getvalue(), ds


@pytest.mark.parametrize("name", sorted(FILES))
def test_charset_sample(deid: Deidentifier, name: str) -> None:
    token = FILES[name]
    data, original = _prepare(name, token)
    original_name_bytes = original["PatientName"].value.original_string
    assert original_name_bytes and original_name_bytes in data
    result, written = run(deid, data)
    assert result.outcome == "written", (result.reason, result.detail)
    assert result.phi.name == str(original.PatientName)  # raw PN, every component group
    out = pydicom.dcmread(io.BytesIO(written))
    assert out.SpecificCharacterSet == original.SpecificCharacterSet
    assert str(out.PatientName) == result.assignment.alias and "=" not in str(out.PatientName)
    assert out.StudyDescription.startswith("Study of ") and token not in out.StudyDescription
    assert "(follow-up)" in out.StudyDescription  # kept text still decodes in the declared charset
    assert original_name_bytes not in written
    for group in str(original.PatientName).split("="):
        for component in group.split("^"):
            if len(component) >= 3:
                assert component not in str(out.StudyDescription)
