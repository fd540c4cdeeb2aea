"""Fail-closed verification: this instance's identifying tokens must not survive de-identification.

Before the profile runs, ``collect_tokens`` gathers the instance's PHI (every person name anywhere in the
data set, patient IDs and other IDs, issuer, accession number, birth date in common spellings, address,
phone numbers, institution names). ``TokenSet`` compiles them once into one case-insensitive byte regex
encoded in the output character set(s); ``scan`` then searches the serialised output header (everything
but the pixel data) in one pass. The same token set scrubs descriptors for the Clean Descriptors option.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydicom._dicom_dict import DicomDictionary
from pydicom.charset import convert_encodings, encode_string
from pydicom.datadict import keyword_dict
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

PN_TAGS = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "PN")
ID_KEYWORDS = (
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "PatientBirthName",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "AdmissionID",
    "ServiceEpisodeID",
    "MilitaryRank",
    "BranchOfService",
    "PatientInsurancePlanCodeSequence",
    "StudyID",
    "RequestedProcedureID",
    "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest",
    "PerformedProcedureStepID",
    "ScheduledProcedureStepID",
    "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID",
    "PatientTelecomInformation",
    "PersonTelecomInformation",
)
DATE_KEYWORDS = ("PatientBirthDate",)
PHONE_KEYWORDS = ("PatientTelephoneNumbers", "PersonTelephoneNumbers", "ReferringPhysicianTelephoneNumbers")
ADDRESS_KEYWORDS = ("PatientAddress", "InstitutionAddress", "PersonAddress", "RegionOfResidence")
INSTITUTION_KEYWORDS = (
    "InstitutionName",
    "InstitutionalDepartmentName",
    "ReferringPhysicianAddress",
    "StationName",
)
TOKEN_KIND: dict[int, str] = {}
for _kw in ID_KEYWORDS:
    TOKEN_KIND[int(keyword_dict[_kw])] = "id"
for _kw in DATE_KEYWORDS:
    TOKEN_KIND[int(keyword_dict[_kw])] = "date"
for _kw in PHONE_KEYWORDS:
    TOKEN_KIND[int(keyword_dict[_kw])] = "phone"
for _kw in ADDRESS_KEYWORDS:
    TOKEN_KIND[int(keyword_dict[_kw])] = "address"
for _kw in INSTITUTION_KEYWORDS:
    TOKEN_KIND[int(keyword_dict[_kw])] = "institution"
for _tag in PN_TAGS:
    TOKEN_KIND[int(_tag)] = "name"
TOKEN_TAGS = frozenset(TOKEN_KIND)
_SPLIT_NAME = re.compile(r"[\^=,\s]+")
_WORD = re.compile(r"[^\W_]{4,}", re.UNICODE)


@dataclass(slots=True)
class Tokens:
    """The raw identifying strings of one instance, before filtering (``dates``: birth dates as DA)."""

    values: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)
    # Institution/station names: the only tokens that may be excused when they are part of a kept
    # equipment value (a clinic named like its scanner's maker). Person names and IDs never are.
    soft: set[str] = field(default_factory=set)

    def add_value(self, kind: str, text: str) -> None:
        """Add the tokens a value of ``kind`` contributes (names split into components etc.)."""
        text = text.strip(" \x00")
        if not text:
            return
        add = self.values.add
        if kind == "name":
            for group in text.split("="):
                if group.strip():
                    add(group.strip())
                for part in _SPLIT_NAME.split(group):
                    if part:
                        add(part)
                        for sub in part.split("-"):
                            add(sub)
        elif kind == "date":
            add(text)
            if len(text) == 8 and text.isdigit():
                self.dates.add(text)
                y, m, d = text[:4], text[4:6], text[6:]
                add(f"{y}-{m}-{d}")
                add(f"{d}.{m}.{y}")
                add(f"{m}/{d}/{y}")
                add(f"{d}/{m}/{y}")
        elif kind == "phone":
            add(text)
            digits = "".join(c for c in text if c.isdigit())
            if len(digits) >= 6:
                add(digits)
        elif kind == "address":
            add(text)
            for word in _WORD.findall(text):
                add(word)
        else:
            add(text)
            for part in text.split("\\"):
                add(part.strip())
            if kind == "institution":
                self.soft.add(text)
                self.soft.update(part.strip() for part in text.split("\\"))


def collect_element(ds: Dataset, tag: int, kind: str, tokens: Tokens) -> None:
    """Add the identifying tokens of one element (of token kind ``kind``) of ``ds``."""
    value = ds[tag].value
    if isinstance(value, Sequence):
        for item in value:
            collect_tokens(item, tokens)
        return
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    for v in values:
        if v is not None and not isinstance(v, bytes):
            tokens.add_value(kind, str(v))


def collect_tokens(ds: Dataset, tokens: Tokens | None = None) -> Tokens:
    """Walk ``ds`` (sequences included) and collect the identifying values it carries."""
    tokens = tokens or Tokens()
    for tag, elem in list(ds._dict.items()):
        t = int(tag)
        kind = TOKEN_KIND.get(t)
        if kind is not None:
            collect_element(ds, t, kind, tokens)
            continue
        vr = elem.VR
        if (
            vr == "SQ"
            or (vr is None and t in DicomDictionary and DicomDictionary[t][0] == "SQ")
            or (isinstance(elem, DataElement) and isinstance(elem.value, Sequence))
        ):
            seq = ds[tag].value
            if isinstance(seq, Sequence):
                for item in seq:
                    collect_tokens(item, tokens)
    return tokens


class TokenSet:
    """Compiled identifying tokens of one instance: scrub text, scan bytes."""

    def __init__(
        self,
        values: Iterable[str],
        *,
        legit: Iterable[str] = (),
        containers: Iterable[str] = (),
        soft: Iterable[str] = (),
        masks: Iterable[bytes] = (),
        encodings: list[str] | None = None,
        min_length: int = 3,
        min_numeric_length: int = 4,
        whole_word_below: int = 6,
    ) -> None:
        legit_set = {v.strip().upper() for v in legit if v and v.strip()}
        # Tokens that are part of a kept equipment value (an institution called like its scanner's
        # manufacturer) identify no one; without this every such site would quarantine everything.
        container_text = "\x00".join(c.upper() for c in containers if c)
        soft_set = {t.strip() for t in soft}
        kept: list[str] = []
        for value in values:
            token = value.strip()
            if _weight(token) < min_length or token.upper() in legit_set:
                continue
            if container_text and token in soft_set and token.upper() in container_text:
                continue
            if token.replace(" ", "").replace("-", "").isdigit() and len(token) < min_numeric_length:
                continue
            kept.append(token)
        # Longest first so whole names are replaced before their components.
        self.tokens = sorted(set(kept), key=lambda t: (-len(t), t))
        self._folded = [t.lower() for t in self.tokens]
        self._whole_word_below = whole_word_below
        self._plan = [(t.lower(), self._whole(t)) for t in self.tokens]
        self.encodings = list(encodings or ["ISO_IR 6"])
        # Values TMI itself wrote (the alias, the pseudonym) are blanked before scanning: a real given
        # name may coincide with the alias's, and must still be found everywhere else.
        self.masks = [m for m in masks if m]
        self._encodings = convert_encodings(encodings or ["iso8859"])
        self._needles: list[tuple[bytes, bool]] | None = None
        self._text_re: re.Pattern[str] | None = None

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def subset(self, keep: Callable[[str], bool]) -> TokenSet:
        """A token set with only the tokens ``keep`` accepts (same encodings, masks and word rule)."""
        return TokenSet(
            [t for t in self.tokens if keep(t)],
            masks=self.masks,
            encodings=self.encodings,
            min_length=0,
            min_numeric_length=0,
            whole_word_below=self._whole_word_below,
        )

    def _whole(self, token: str) -> bool:
        # Short Latin tokens match whole words only ("ANN" must not hit "SCANNER"); scripts without
        # spaces between words (CJK) have no such boundary.
        return token.isascii() and len(token) < self._whole_word_below

    def _byte_needles(self) -> list[tuple[bytes, bool]]:
        # Every token in every plausible encoding, ASCII-lowercased to match a lowercased haystack;
        # bytes.find is a C memmem, far faster than one big alternation regex over the header.
        if self._needles is None:
            seen: dict[bytes, bool] = {}
            for token in self.tokens:
                whole = self._whole(token)
                if token.isascii():
                    # ASCII is the same bytes in every character set DICOM allows (ISO 2022 starts in it).
                    variants = {token.lower().encode("ascii")}
                else:
                    variants = set()
                    for variant in {token, token.upper(), token.lower()}:
                        variants |= _encodings_of(variant, self._encodings)
                for encoded in variants:
                    if encoded:
                        key = encoded.lower()
                        seen[key] = seen.get(key, True) and whole
            self._needles = sorted(seen.items(), key=lambda kv: -len(kv[0]))
        return self._needles

    def _text_pattern(self) -> re.Pattern[str]:
        if self._text_re is None:
            parts = []
            for token in self.tokens:
                esc = re.escape(token)
                if self._whole(token):
                    esc = r"(?<![0-9A-Za-z])" + esc + r"(?![0-9A-Za-z])"
                parts.append(esc)
            self._text_re = re.compile("|".join(parts), re.IGNORECASE)
        return self._text_re

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Non-overlapping (start, end) spans of token occurrences in ``text``, case-insensitively.

        Plain ``str.find`` on the lowercased text: compiling a per-instance alternation regex would cost
        milliseconds per instance (each instance has its own tokens, so ``re``'s cache never helps).
        """
        folded = text.lower()
        if len(folded) != len(text):
            # Lowercasing changed the length (e.g. "İ"): offsets no longer line up, use the regex.
            return [m.span() for m in self._text_pattern().finditer(text)]
        taken = bytearray(len(text))
        spans: list[tuple[int, int]] = []
        for ftoken, whole in self._plan:
            start = folded.find(ftoken)
            while start >= 0:
                end = start + len(ftoken)
                ok = not any(taken[start:end])
                if ok and whole:
                    ok = (start == 0 or not _is_ascii_alnum(text[start - 1])) and (
                        end == len(text) or not _is_ascii_alnum(text[end])
                    )
                if ok:
                    spans.append((start, end))
                    taken[start:end] = b"\x01" * (end - start)
                start = folded.find(ftoken, start + 1)
        spans.sort()
        return spans

    def scrub(self, text: str, replacement: str = "*") -> str:
        """Return ``text`` with every token occurrence replaced (Clean Descriptors)."""
        if not self.tokens or not text:
            return text
        spans = self._spans(text)
        if not spans:
            return text
        out: list[str] = []
        last = 0
        for start, end in spans:
            out.append(text[last:start])
            out.append(replacement)
            last = end
        out.append(text[last:])
        return "".join(out)

    def contains_text(self, text: str) -> bool:
        """True when ``text`` contains a token."""
        if not self.tokens or not text:
            return False
        return bool(self._spans(text))

    def find_bytes(self, data: bytes) -> int:
        """Offset of the first token in ``data`` (ASCII case-insensitive), or -1."""
        if not self.tokens:
            return -1
        for mask in self.masks:
            if mask in data:
                data = data.replace(mask, b"\x00" * len(mask))
        hay = data.lower()
        best = -1
        for needle, whole in self._byte_needles():
            pos = hay.find(needle)
            while pos >= 0:
                if not whole or (
                    (pos == 0 or hay[pos - 1] not in _ALNUM)
                    and (pos + len(needle) >= len(hay) or hay[pos + len(needle)] not in _ALNUM)
                ):
                    if best < 0 or pos < best:
                        best = pos
                    break
                pos = hay.find(needle, pos + 1)
        return best

    def contains_bytes(self, data: bytes) -> bool:
        """True when the serialised ``data`` contains a token."""
        return self.find_bytes(data) >= 0


_ALNUM = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _weight(token: str) -> int:
    """Length for the minimum-length rule: wide (CJK) characters count twice, as they carry more."""
    if token.isascii():
        return len(token)
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in token)


_ISO2022_RESETS = (b"\x1b(B", b"\x1b(J")


def _encodings_of(text: str, encodings: list[str]) -> set[bytes]:
    out: set[bytes] = set()
    try:
        encoded = encode_string(text, encodings)
        out.add(encoded)
        if encoded.startswith(b"\x1b"):
            # ISO 2022: the token may be followed by more characters of the same set (no reset after
            # it) or sit in the middle of a run (no designation before it either).
            for reset in _ISO2022_RESETS:
                if encoded.endswith(reset):
                    out.add(encoded[: -len(reset)])
                    inner = encoded[3 : -len(reset)]
                    if len(inner) >= 4 and b"\x1b" not in inner:
                        out.add(inner)
    except (UnicodeError, LookupError, ValueError):
        pass
    for codec in ("utf-8", "latin-1"):
        try:
            out.add(text.encode(codec))
        except UnicodeError:
            pass
    return out


def find_path(
    ds: Dataset,
    tokens: TokenSet,
    implicit: bool,
    little: bool,
    prefix: str = "",
    *,
    skip_vrs: frozenset[str] = frozenset(),
    skip_tags: frozenset[int] = frozenset(),
) -> str | None:
    """Return the tag path (e.g. ``(0040,0275)[0].(0032,1060)``) of the first element holding a token.

    Only used after the byte scan found a hit, to report *where* (never the value), or to check whether
    a hit lies only in elements of ``skip_vrs`` or ``skip_tags``. Each element is re-serialised on its
    own with the same writer as the output, so the search sees exactly the bytes that were scanned.
    """
    from tmi.deid.writer import HeaderWriter  # local: writer imports nothing from here, keep it so

    writer = HeaderWriter(implicit, little)
    charset = ds._dict.get(0x00080005)  # type: ignore[call-overload]
    encodings: str | list[str] = "iso8859"
    if charset is not None:
        value = ds[0x00080005].value
        encodings = str(value) if isinstance(value, str) else [str(v) for v in value]
    for tag in sorted(ds._dict, key=int):
        elem = ds._dict[tag]
        path = f"{prefix}({tag >> 16:04X},{tag & 0xFFFF:04X})"
        value = elem.value if not isinstance(elem, RawDataElement) else None
        if isinstance(value, Sequence):
            for index, item in enumerate(value):
                found = find_path(item, tokens, implicit, little, f"{path}[{index}].", skip_vrs=skip_vrs,
                                  skip_tags=skip_tags)
                if found:
                    return found
            continue
        vr = elem.VR or (DicomDictionary[tag][0] if tag in DicomDictionary else "UN")
        if vr in skip_vrs or int(tag) in skip_tags:
            continue
        single = Dataset()
        single._dict[tag] = elem
        out = bytearray()
        try:
            writer.dataset(single, encodings, out)
        except (ValueError, TypeError, NotImplementedError, LookupError):
            return path  # cannot serialise it alone: report it rather than pass it
        if tokens.contains_bytes(bytes(out)):
            return path
    return None


class RawScanError(Exception):
    """The raw sequence bytes do not parse; the caller falls back to pydicom."""


_ITEM_TAG = 0xFFFEE000
_ITEM_DELIM_TAG = 0xFFFEE00D
_SEQ_DELIM_TAG = 0xFFFEE0DD
_LONG_LEN_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)


def collect_raw_sequence(value: bytes, implicit: bool, little: bool, codec: str, tokens: Tokens) -> None:
    """Add the identifying tokens found in an undecoded sequence value to ``tokens``."""

    def on_value(tag: int, text: str) -> None:
        kind = TOKEN_KIND.get(tag)
        if kind is not None:
            tokens.add_value(kind, text)

    scan_raw_sequence(value, implicit, little, codec, TOKEN_TAGS, on_value)


def scan_raw_sequence(
    value: bytes,
    implicit: bool,
    little: bool,
    codec: str,
    wanted: frozenset[int],
    on_value: Callable[[int, str], None],
) -> None:
    """Collect identifying tokens from an undecoded sequence value without building pydicom objects.

    Used for sequences the profile removes or empties: their values never reach the output, but what
    they say about the patient (other IDs, names) is still looked for elsewhere. Parsing them with
    pydicom would cost more than the rest of the instance; this walks the bytes with ``struct`` only.
    Raises ``RawScanError`` on anything unexpected, so the caller can fall back to pydicom.
    """
    import struct

    endian = "<" if little else ">"
    tag_len = struct.Struct(endian + "HHL")
    short = struct.Struct(endian + "H")
    long_ = struct.Struct(endian + "L")
    end_all = len(value)

    def element_header(pos: int) -> tuple[int, bytes | None, int, int]:
        if pos + 8 > end_all:
            raise RawScanError("header past end")
        group, elem, length = tag_len.unpack_from(value, pos)
        tag = group << 16 | elem
        if implicit or group == 0xFFFE:
            return tag, None, length, pos + 8
        vr = value[pos + 4 : pos + 6]
        if vr in _LONG_LEN_VRS:
            if pos + 12 > end_all:
                raise RawScanError("header past end")
            return tag, vr, long_.unpack_from(value, pos + 8)[0], pos + 12
        return tag, vr, short.unpack_from(value, pos + 6)[0], pos + 8

    def sequence(pos: int, end: int | None) -> int:
        # Items until ``end`` (defined length) or the sequence delimiter (undefined length).
        while end is None or pos < end:
            tag, _vr, length, pos = element_header(pos)
            if tag == _SEQ_DELIM_TAG:
                return pos
            if tag != _ITEM_TAG:
                raise RawScanError("not an item")
            pos = dataset(pos, None if length == 0xFFFFFFFF else pos + length)
        return pos

    def dataset(pos: int, end: int | None) -> int:
        while end is None or pos < end:
            tag, vr, length, pos = element_header(pos)
            if tag == _ITEM_DELIM_TAG:
                return pos
            entry = DicomDictionary.get(tag)
            is_sq = vr == b"SQ" or (vr is None and entry is not None and entry[0] == "SQ")
            if length == 0xFFFFFFFF:
                if not is_sq and vr != b"UN":
                    raise RawScanError("undefined length outside a sequence")
                pos = sequence(pos, None)
                continue
            if pos + length > end_all:
                raise RawScanError("value past end")
            if is_sq:
                sequence(pos, pos + length)
            else:
                if tag in wanted:
                    for part in value[pos : pos + length].decode(codec, "replace").split("\\"):
                        on_value(tag, part)
            pos += length
        return pos

    sequence(0, end_all)
