"""Offline pseudonyms and aliases, derived from the de-identification key.

A pseudonym is ``TMI-`` + 10 Crockford base32 characters (50 bits of HMAC-SHA256). Offline mode maps
the normalised (issuer or institution or calling AE title, patient ID) pair; the crosswalk's
PostgreSQL provider implements the same port with matching rules and a database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Collection

from tmi.ports import PatientPHI, PseudonymAssignment

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PSEUDONYM_RE = re.compile(r"^TMI-[0-9ABCDEFGHJKMNPQRSTVWXYZ]{10}$")

# Clearly synthetic given names (the family name is always "ALIAS-xxxx"), ASCII only so that any
# SpecificCharacterSet can carry them.
_FEMALE = (
    "ADA",
    "BEA",
    "CARA",
    "DORA",
    "EDNA",
    "FAYE",
    "GINA",
    "HANA",
    "IDA",
    "JUNE",
    "KAYA",
    "LENA",
    "MAYA",
    "NINA",
    "OLGA",
    "PIA",
    "RITA",
    "SARA",
    "TINA",
    "UMA",
    "VERA",
    "WANDA",
    "XENA",
    "YARA",
    "ZOE",
    "ALMA",
    "BELLA",
    "CLARA",
    "DIANA",
    "ELLA",
    "FLORA",
    "GRETA",
)
_MALE = (
    "ABE",
    "BEN",
    "CARL",
    "DAN",
    "ED",
    "FRED",
    "GUS",
    "HAL",
    "IVAN",
    "JON",
    "KARL",
    "LEO",
    "MAX",
    "NED",
    "OTTO",
    "PAUL",
    "RAY",
    "SAM",
    "TED",
    "UGO",
    "VIC",
    "WALT",
    "XAVI",
    "YURI",
    "ZANE",
    "AXEL",
    "BRUNO",
    "CLIVE",
    "DEAN",
    "EMIL",
    "FELIX",
    "GLEN",
)
_NEUTRAL = (
    "ALEX",
    "ASH",
    "BLAIR",
    "CASEY",
    "DANA",
    "ELI",
    "FINLEY",
    "GRAY",
    "HAYDEN",
    "JODY",
    "KAI",
    "LEE",
    "MORGAN",
    "NOEL",
    "QUINN",
    "REESE",
    "ROBIN",
    "SAGE",
    "SHAY",
    "SKY",
    "TATE",
    "TERRY",
    "VAL",
    "WREN",
    "JESSE",
    "JAMIE",
    "KIT",
    "LANE",
    "PAT",
    "RORY",
    "SASHA",
    "TOBY",
)


def crockford32(data: bytes, length: int) -> str:
    """Encode the leading bits of ``data`` as ``length`` Crockford base32 characters."""
    number = int.from_bytes(data, "big")
    bits = len(data) * 8
    out = []
    for i in range(length):
        shift = bits - 5 * (i + 1)
        out.append(CROCKFORD[(number >> shift) & 31])
    return "".join(out)


def normalize(value: str | None) -> str:
    """Case-, accent- and whitespace-insensitive form used before hashing identifiers."""
    if not value:
        return ""
    text = unicodedata.normalize("NFKC", value).strip().upper()
    return " ".join(text.split())


def name_words(name: str | None) -> set[str]:
    """Upper-cased words of every component and group of a PN value (``DOE^LENA MARIE=...``): what an
    alias must not carry (``alias_for(..., avoid=name_words(name))``)."""
    if not name:
        return set()
    return {w for w in re.split(r"[\^=\s,.\-]+", name.upper()) if w}


def alias_for(pseudonym: str, sex: str | None, avoid: Collection[str] = ()) -> str:
    """Return the deterministic, sex-consistent, clearly synthetic alias (a PN value) for ``pseudonym``.

    ``F`` picks from female given names, ``M`` from male ones, anything else from neutral ones; the
    family name is ``ALIAS-`` plus four pseudonym characters, e.g. ``ALIAS-7K3Q^MAYA``. Pure: no key.
    ``avoid`` lists words (the patient's own name components) the given name must not equal: the pick
    is drawn without looking at PHI, so it can coincide with the real given name by chance, and a real
    name must never appear on the research side. The result stays deterministic for the same inputs.
    """
    digest = hashlib.sha256(("alias:" + pseudonym).encode("utf-8")).digest()
    code = (sex or "").strip().upper()[:1]
    names = _FEMALE if code == "F" else _MALE if code == "M" else _NEUTRAL
    banned = {word.strip().upper() for word in avoid}
    start = int.from_bytes(digest[:4], "big")
    given = next(
        (
            names[(start + step) % len(names)]
            for step in range(len(names))
            if names[(start + step) % len(names)].upper() not in banned
        ),
        "ANON",
    )
    tail = pseudonym[4:8] if pseudonym.startswith("TMI-") else crockford32(digest[4:8], 4)
    return f"ALIAS-{tail}^{given}"


class OfflinePseudonymProvider:
    """``tmi.ports.PseudonymProvider`` deriving pseudonyms from the key alone (no crosswalk, no I/O).

    The namespace is the issuer of the patient ID, else the institution name, else the calling AE title;
    the pseudonym is HMAC-SHA256(key, namespace, patient ID). Without a patient ID the name and birth
    date are used instead (weaker; the crosswalk handles such patients better).
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def pseudonym_for(self, phi: PatientPHI) -> str:
        """Return the pseudonym alone (used by ``assign``)."""
        namespace = normalize(phi.issuer) or normalize(phi.institution) or normalize(phi.calling_aet)
        if phi.patient_id and normalize(phi.patient_id):
            subject = "id\x00" + normalize(phi.patient_id)
        else:
            subject = "name\x00" + normalize(phi.name) + "\x00" + normalize(phi.birth_date)
        message = ("pseudonym\x00" + namespace + "\x00" + subject).encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return "TMI-" + crockford32(digest[:7], 10)

    def assign(self, phi: PatientPHI) -> PseudonymAssignment:
        """Return the pseudonym assignment for ``phi``; the same patient always gets the same one."""
        pseudonym = self.pseudonym_for(phi)
        return PseudonymAssignment(pseudonym=pseudonym, alias=alias_for(pseudonym, phi.sex))
