"""An alias drawn without PHI must never carry the patient's own given name onto the research side."""

from __future__ import annotations

import pydicom
import pytest

from tests.unit.deid.conftest import KEY
from tests.unit.deid.helpers import Person, base_dataset, run, to_file
from tmi.deid import Deidentifier, alias_for, load_profile
from tmi.ports import PatientPHI, PseudonymAssignment

PSEUDONYM = "TMI-XBGGFZ6YBJ"


class FixedProvider:
    """A crosswalk-like provider: a random-looking pseudonym and the alias stored for it."""

    def __init__(self, sex: str) -> None:
        self.assignment = PseudonymAssignment(PSEUDONYM, alias_for(PSEUDONYM, sex))

    def assign(self, phi: PatientPHI) -> PseudonymAssignment:
        return self.assignment


def _given(alias: str) -> str:
    return alias.partition("^")[2]


def test_alias_for_avoids_listed_words_deterministically() -> None:
    plain = alias_for(PSEUDONYM, "F")
    avoided = alias_for(PSEUDONYM, "F", avoid={_given(plain).lower()})
    assert _given(avoided) != _given(plain)
    assert avoided == alias_for(PSEUDONYM, "F", avoid={_given(plain)})
    assert avoided.startswith(plain.partition("^")[0])  # same family part: the pseudonym's


@pytest.mark.parametrize("profile_name", ["clinic-research", "basic"])
def test_patient_named_like_the_alias_gets_another_alias(profile_name: str) -> None:
    profile = load_profile(profile_name)
    keep_sex = profile.table.get(0x00100040) == "K"
    drawn = alias_for(PSEUDONYM, "F" if keep_sex else None)
    patient = Person(given=_given(drawn).title())  # the real given name equals the drawn alias's
    deid = Deidentifier(profile, KEY, FixedProvider("F"))
    result, written = run(deid, to_file(base_dataset(patient)))
    assert result.outcome == "written", (result.reason, result.detail)
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(written))
    assert _given(str(out.PatientName)) != _given(drawn)
    assert _given(drawn).encode() not in written.upper()
    _, written_again = run(deid, to_file(base_dataset(patient)))
    assert written_again == written  # still deterministic
