"""PHI normalization for matching: case, whitespace, accents, PN component order and groups.

Everything here is pure and deterministic. The normalized form is only ever used to *compare* values;
the crosswalk always stores what arrived as well (scan identities are a record of fact).

A DICOM PN value has up to three component groups separated by ``=`` (alphabetic, ideographic,
phonetic), each with up to five components separated by ``^`` (family, given, middle, prefix, suffix).
Two names match when a component group present on both sides normalizes to the same token set:
family/given/middle tokens, sorted (so ``Doe^John`` equals ``John^Doe`` and ``DOE^JOHN^^^``), prefixes and
suffixes dropped (``Dr``, ``Jr``), accents folded (``Müller`` equals ``Muller``).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from tmi.ports import PatientPHI

_WS = re.compile(r"\s+")
# In alphabetic groups, punctuation separates tokens ("O'Brien" -> "o brien", "Smith-Jones" -> two tokens).
_NON_WORD = re.compile(r"[^\w\s]", re.UNICODE)
_KATAKANA_START, _KATAKANA_END, _KANA_SHIFT = 0x30A1, 0x30F6, 0x60
PHI_FIELDS: tuple[str, ...] = ("name", "birth_date", "sex")


def fold_text(value: str | None) -> str:
    """Case-fold, strip accents, turn punctuation into spaces and collapse whitespace ("" when empty)."""
    if not value:
        return ""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # Letters that do not decompose but have a conventional ASCII spelling.
    stripped = stripped.translate(_EXTRA_FOLDS)
    cleaned = _NON_WORD.sub(" ", stripped.casefold())
    return _WS.sub(" ", cleaned).strip()


_EXTRA_FOLDS = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ł": "l", "Ł": "L",
                              "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ı": "i"})


def _fold_ideographic(value: str) -> str:
    """NFKC (full-width to half-width), case-fold, katakana to hiragana, no whitespace.

    Accents are *not* stripped here: in Japanese a combining mark (dakuten) changes the syllable.
    """
    text = unicodedata.normalize("NFKC", value).casefold()
    text = "".join(
        chr(ord(ch) - _KANA_SHIFT) if _KATAKANA_START <= ord(ch) <= _KATAKANA_END else ch for ch in text
    )
    return _WS.sub("", text)


@dataclass(frozen=True, slots=True)
class NormalizedName:
    """A PN value reduced to one comparable key per component group ("" when the group is empty)."""

    alphabetic: str = ""
    ideographic: str = ""
    phonetic: str = ""

    @property
    def key(self) -> str:
        """The index key: the first non-empty group (alphabetic preferred), or ""."""
        return self.alphabetic or self.ideographic or self.phonetic

    @property
    def present(self) -> bool:
        return bool(self.key)


def normalize_name(raw: str | None) -> NormalizedName:
    """Normalize a DICOM PN value (all component groups); see the module docstring for the rules."""
    if not raw or not raw.strip():
        return NormalizedName()
    groups = [*raw.split("="), "", ""][:3]
    out: list[str] = []
    for index, group in enumerate(groups):
        components = [*group.split("^"), "", "", "", "", ""][:5]
        # family, given, middle carry identity; prefix/suffix (Dr, Jr, III) do not.
        significant = components[:3]
        if index == 0:
            tokens = [tok for comp in significant for tok in fold_text(comp).split()]
            out.append(" ".join(sorted(tokens)))
        else:
            parts = [_fold_ideographic(comp) for comp in significant]
            out.append(" ".join(sorted(p for p in parts if p)))
    return NormalizedName(alphabetic=out[0], ideographic=out[1], phonetic=out[2])


def normalize_birth_date(raw: str | None) -> str | None:
    """Return ``YYYYMMDD`` for a valid DA (also accepts ``YYYY-MM-DD`` / ``YYYY.MM.DD``), else ``None``.

    An invalid date is treated as missing: it can neither confirm nor contradict a match.
    """
    if not raw:
        return None
    digits = re.sub(r"[\s\-./]", "", raw)
    if not re.fullmatch(r"\d{8}", digits):
        return None
    try:
        date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None
    return digits


def normalize_sex(raw: str | None) -> str | None:
    """Return ``M``, ``F`` or ``O``; anything else (empty, unknown spellings) is missing."""
    if not raw:
        return None
    value = fold_text(raw)
    mapping = {"m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O"}
    return mapping.get(value)


def normalize_patient_id(raw: str | None) -> str | None:
    """Strip surrounding whitespace (IDs are otherwise case- and content-sensitive); empty is missing."""
    if raw is None:
        return None
    value = raw.strip()
    return value or None


def clinic_key(phi: PatientPHI,
               fields: tuple[str, ...] = ("issuer", "institution", "calling_aet")) -> str | None:
    """The issuer/clinic half of the match key: the first present field of ``fields``, tagged by kind.

    Tagging (``issuer:``, ``institution:``, ``calling_aet:``) keeps an issuer and an AE title that happen
    to be spelled alike from being taken for the same namespace.
    """
    for name in fields:
        value = fold_text(getattr(phi, name))
        if value:
            return f"{name}:{value}"
    return None


@dataclass(frozen=True, slots=True)
class NormalizedPHI:
    """The comparable form of one ``PatientPHI``."""

    clinic: str | None
    patient_id: str | None
    name: NormalizedName
    birth_date: str | None
    sex: str | None

    @property
    def match_key(self) -> tuple[str, str] | None:
        """(clinic, patient ID), or ``None`` when either is missing: a patient ID alone is never a key."""
        if self.clinic and self.patient_id:
            return (self.clinic, self.patient_id)
        return None

    def present_fields(self) -> tuple[str, ...]:
        """Which of name, birth date, sex are present."""
        return tuple(f for f in PHI_FIELDS if self.has(f))

    def has(self, field: str) -> bool:
        if field == "name":
            return self.name.present
        return bool(getattr(self, field))


def normalize_phi(phi: PatientPHI, clinic_fields: tuple[str, ...] = ("issuer", "institution", "calling_aet"),
                  ) -> NormalizedPHI:
    """Normalize every field used by the matching rules."""
    return NormalizedPHI(
        clinic=clinic_key(phi, clinic_fields),
        patient_id=normalize_patient_id(phi.patient_id),
        name=normalize_name(phi.name),
        birth_date=normalize_birth_date(phi.birth_date),
        sex=normalize_sex(phi.sex),
    )


def names_equal(a: NormalizedName, b: NormalizedName) -> bool | None:
    """``True``/``False`` when the two names share a present component group, ``None`` when they cannot
    be compared (one is empty, or they only carry different groups, e.g. romaji vs kanji only)."""
    result: bool | None = None
    for x, y in ((a.alphabetic, b.alphabetic), (a.ideographic, b.ideographic), (a.phonetic, b.phonetic)):
        if x and y:
            if x == y:
                return True
            result = False
    return result


def raw_fingerprint(phi: PatientPHI) -> str:
    """SHA-256 of exactly what arrived (field by field); identical arrivals share one scan identity."""
    payload = json.dumps(
        [phi.patient_id, phi.issuer, phi.name, phi.birth_date, phi.sex, list(phi.other_ids),
         phi.institution, phi.calling_aet],
        ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
