"""PHI normalization: case, whitespace, accents, PN component order and groups, dates, sex, keys."""

from __future__ import annotations

import pytest

from tmi.crosswalk.normalize import (
    NormalizedName,
    clinic_key,
    fold_text,
    names_equal,
    normalize_birth_date,
    normalize_name,
    normalize_phi,
    normalize_sex,
    raw_fingerprint,
)
from tmi.ports import PatientPHI


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Doe^John", "DOE^JOHN"),  # case
        ("Doe^John", "  Doe ^  John  "),  # whitespace
        ("Doe^John", "Doe^John^^^"),  # empty trailing components
        ("Doe^John", "John^Doe"),  # component order
        ("Doe^John", "Doe John"),  # PN written without carets
        ("Müller^Jürgen", "MULLER^JURGEN"),  # accents
        ("Ñúñez^José", "Nunez^Jose"),
        ("Strauß^Anna", "Strauss^Anna"),
        ("O'Brien^Seán", "O BRIEN^Sean"),  # punctuation separates tokens
        ("Doe^John^^Dr^Jr", "Doe^John"),  # prefix/suffix do not carry identity
        ("Doe^John^Paul", "Paul^Doe^John"),
    ],
)
def test_equal_after_normalization(a: str, b: str) -> None:
    assert normalize_name(a) == normalize_name(b)
    assert names_equal(normalize_name(a), normalize_name(b)) is True


@pytest.mark.parametrize(("a", "b"), [("Doe^John", "Doe^Jon"), ("Doe^John", "Doe^John^Paul"),
                                      ("Smith^Anna", "Smyth^Anna")])
def test_different_names_stay_different(a: str, b: str) -> None:
    assert names_equal(normalize_name(a), normalize_name(b)) is False


def test_ideographic_and_phonetic_groups() -> None:
    full = normalize_name("Yamada^Tarou=山田^太郎=やまだ^たろう")
    assert full.alphabetic == "tarou yamada"
    assert full.ideographic == "太郎 山田"
    assert full.phonetic == "たろう やまだ"
    # Only the ideographic group present: comparable with the same ideographic group, katakana folded to
    # hiragana in the phonetic group, full-width letters folded by NFKC.
    only_ideo = normalize_name("=山田^太郎")
    assert only_ideo.key == "太郎 山田"
    assert names_equal(full, only_ideo) is True
    assert names_equal(normalize_name("==ヤマダ^タロウ"), full) is True
    assert normalize_name("ＹＡＭＡＤＡ^ＴＡＲＯＵ").alphabetic == "tarou yamada"
    # No group in common: cannot be compared (neither match nor mismatch).
    assert names_equal(normalize_name("Yamada^Tarou"), only_ideo) is None
    # Dakuten matters in Japanese: not stripped like a Latin accent.
    assert normalize_name("=だ").ideographic != normalize_name("=た").ideographic


def test_empty_name_is_missing() -> None:
    assert normalize_name(None) == NormalizedName()
    assert normalize_name("^^^^") == NormalizedName()
    assert normalize_name("  ") == NormalizedName()
    assert names_equal(normalize_name(""), normalize_name("Doe^John")) is None


@pytest.mark.parametrize(("raw", "expected"), [("19700101", "19700101"), ("1970-01-01", "19700101"),
                                               ("1970.01.01", "19700101"), ("19700231", None), ("", None),
                                               (None, None), ("1970", None), ("abcdefgh", None)])
def test_birth_date(raw: str | None, expected: str | None) -> None:
    assert normalize_birth_date(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [("M", "M"), ("f", "F"), (" O ", "O"), ("male", "M"),
                                               ("", None), (None, None), ("U", None), ("X", None)])
def test_sex(raw: str | None, expected: str | None) -> None:
    assert normalize_sex(raw) == expected


def test_clinic_key_prefers_issuer_and_is_tagged() -> None:
    assert clinic_key(PatientPHI(issuer="Clinic A", institution="Hospital")) == "issuer:clinic a"
    assert clinic_key(PatientPHI(institution="St. Mary's")) == "institution:st mary s"
    assert clinic_key(PatientPHI(calling_aet="CT01")) == "calling_aet:ct01"
    assert clinic_key(PatientPHI(issuer="CT01")) != clinic_key(PatientPHI(calling_aet="CT01"))
    assert clinic_key(PatientPHI()) is None


def test_match_key_never_patient_id_alone() -> None:
    assert normalize_phi(PatientPHI(patient_id="123")).match_key is None
    assert normalize_phi(PatientPHI(issuer="A")).match_key is None
    assert normalize_phi(PatientPHI(patient_id=" 123 ", issuer="A")).match_key == ("issuer:a", "123")


def test_present_fields() -> None:
    norm = normalize_phi(PatientPHI(name="Doe^John", sex="U"))
    assert norm.present_fields() == ("name",)


def test_fingerprint_is_exact() -> None:
    a = PatientPHI(patient_id="1", issuer="A", name="Doe^John")
    assert raw_fingerprint(a) == raw_fingerprint(PatientPHI(patient_id="1", issuer="A", name="Doe^John"))
    assert raw_fingerprint(a) != raw_fingerprint(PatientPHI(patient_id="1", issuer="A", name="DOE^JOHN"))
    assert raw_fingerprint(a) != raw_fingerprint(PatientPHI(patient_id="1", issuer="A", name="Doe^John",
                                                            calling_aet="X"))


def test_fold_text() -> None:
    assert fold_text("  Ångström\tÉLAN  ") == "angstrom elan"
    assert fold_text(None) == ""
