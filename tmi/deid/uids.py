"""Keyed UID remapping into the ``2.25.`` root, sparing well-known standard UIDs."""

from __future__ import annotations

import hashlib
import hmac
import re

from pydicom._uid_dict import UID_dictionary

# Coding schemes' and registries' UIDs that are public constants, not identifiers of anything local
# (PS3.16 Table 8-1); remapping them would break code lookups.
WELL_KNOWN_ROOTS = ("1.2.840.10008.",)
WELL_KNOWN_EXTRA = frozenset(
    {
        "2.16.840.1.113883.6.96",  # SNOMED CT
        "2.16.840.1.113883.6.1",  # LOINC
        "2.16.840.1.113883.6.8",  # UCUM
        "2.16.840.1.113883.6.256",  # RadLex
        "2.16.840.1.113883.6.3",  # ICD-10
        "2.16.840.1.113883.6.90",  # ICD-10-CM
        "2.16.840.1.113883.6.103",  # ICD-9-CM
        "2.16.840.1.113883.6.4",  # ICD-10-PCS
        "2.16.840.1.113883.6.43.1",  # ICD-O-3
        "2.16.840.1.113883.6.24",  # MDC
        "2.16.840.1.113883.6.5",  # SNOMED (SRT legacy)
        "2.16.840.1.113883.6.88",  # RxNorm
        "2.16.840.1.113883.6.12",  # CPT-4
        "2.16.840.1.113883.3.26.1.1",  # NCI Thesaurus
        "2.16.840.1.113883.6.139",  # UMLS
        "2.16.840.1.113883.6.86",  # UMLS CUI
        "1.2.840.10008.2.16.4",  # DCM
    }
)
_MAX_CACHE = 200_000


_UID_SYNTAX = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_well_known(uid: str) -> bool:
    """True for UIDs that are public standard constants (SOP classes, transfer syntaxes, coding schemes).

    A value under the DICOM root must still be a syntactically valid UID: a corrupted one is not a
    standard constant and is remapped like any other value.
    """
    if uid in UID_dictionary or uid in WELL_KNOWN_EXTRA:
        return True
    return uid.startswith(WELL_KNOWN_ROOTS) and len(uid) <= 64 and _UID_SYNTAX.match(uid) is not None


class UidMapper:
    """Deterministic HMAC-SHA256 UID remapping with a per-process cache.

    ``map(uid)`` returns ``2.25.<decimal of the first 128 bits of HMAC-SHA256(key, uid)>`` (at most 44
    characters, well within 64) for any UID that is not well-known; the same key always yields the
    same research UID, which keeps studies and series together across arrivals and references intact.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._cache: dict[str, str] = {}

    def map(self, uid: str) -> str:
        """Return the research UID for ``uid`` (unchanged if empty or well-known)."""
        cached = self._cache.get(uid)
        if cached is not None:
            return cached
        clean = uid.strip("\x00 ")
        if not clean or is_well_known(clean):
            result = clean
        else:
            digest = hmac.new(
                self._key, b"uid\x00" + clean.encode("ascii", "replace"), hashlib.sha256
            ).digest()
            result = "2.25." + str(int.from_bytes(digest[:16], "big"))
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[uid] = result
        return result

    def map_multi(self, value: str) -> str:
        """Map a backslash-separated multi-valued UI string value by value."""
        if "\\" not in value:
            return self.map(value)
        return "\\".join(self.map(v) for v in value.split("\\"))
