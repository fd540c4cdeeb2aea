"""Apply a compiled profile to a pydicom data set, in place, element by element.

Speed matters (the core must stay close to a plain pydicom read+write): elements whose action is K are
left as undecoded ``RawDataElement`` and written back byte for byte; only elements that change are
decoded. Sequences are walked recursively with the same table (the standard applies it at any depth).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import warnings
from collections.abc import Callable

from pydicom._dicom_dict import DicomDictionary
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from tmi.deid.profile import NOTE, Profile
from tmi.deid.uids import UidMapper
from tmi.deid.verifier import (
    TOKEN_KIND,
    RawScanError,
    Tokens,
    TokenSet,
    collect_element,
    collect_raw_sequence,
    collect_tokens,
)

log = logging.getLogger(__name__)

NUMERIC_VRS = frozenset({"AT", "DS", "FD", "FL", "IS", "SL", "SS", "SV", "UL", "US", "UV"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
DATE_VRS = frozenset({"DA", "DT", "TM"})
# Character-string VRs whose values never contain C0 control bytes other than TAB, LF, FF, CR and ESC
# (ISO 2022 escapes); element headers that a corrupted length swallowed always do.
CHECKED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_CORRUPT = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
_TEXT_RUN = re.compile(rb"[\x20-\x7e\x80-\xff]{3,}")
DUMMY_TEXT = "DEIDENTIFIED"
# D (dummy) values of the character-string VRs; binary VRs get zeros (below).
DUMMY: dict[str, str] = {
    "AE": DUMMY_TEXT,
    "AS": "000Y",
    "CS": DUMMY_TEXT,
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "PN": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "ST": DUMMY_TEXT,
    "UC": DUMMY_TEXT,
    "UT": DUMMY_TEXT,
    "UR": "urn:tmi:deidentified",
}
# Zero-valued dummies of binary VRs are the same bytes in either endianness.
_BINARY_DUMMY: dict[str, bytes] = {
    "AT": b"\x00" * 4,
    "FD": b"\x00" * 8,
    "FL": b"\x00" * 4,
    "SL": b"\x00" * 4,
    "SS": b"\x00" * 2,
    "SV": b"\x00" * 8,
    "UL": b"\x00" * 4,
    "US": b"\x00" * 2,
    "UV": b"\x00" * 8,
    "OB": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "OW": b"\x00\x00",
    "UN": b"\x00\x00",
}


def pad(value: bytes, vr: str) -> bytes:
    """Pad an encoded value to even length the way PS3.5 wants for ``vr`` (UI with NUL, text with space)."""
    if len(value) % 2:
        return value + (b"\x00" if vr == "UI" else b" ")
    return value


def raw_element(tag: int, vr: str, value: bytes, implicit: bool, little: bool) -> RawDataElement:
    """A ready-to-write element; pydicom writes raw values verbatim, far cheaper than a DataElement."""
    return RawDataElement(BaseTag(tag), vr, len(value), value, 0, implicit, little)


def dummy_bytes(vr: str) -> bytes:
    """The encoded D (dummy) value for ``vr``."""
    binary = _BINARY_DUMMY.get(vr)
    if binary is not None:
        return binary
    return pad(DUMMY.get(vr, DUMMY_TEXT).encode("ascii"), vr)


def element_vr(tag: int, elem: DataElement | RawDataElement) -> str:
    """The element's VR: explicit when known, else the dictionary's (first choice if ambiguous), else UN."""
    vr = elem.VR
    if vr is None or vr == "UN":
        entry = DicomDictionary.get(tag)
        if entry is not None:
            vr = entry[0]
        elif vr is None:
            vr = "UN"
    if " or " in vr:
        vr = vr.split(" or ")[0]
    return str(vr)


def shift_date_value(value: str, vr: str, days: int) -> str | None:
    """Shift a DA or DT value (multi-valued allowed) by ``days``; ``None`` when it does not parse."""
    out: list[str] = []
    for part in value.split("\\"):
        text = part.strip()
        if not text:
            out.append(text)
            continue
        try:
            day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return None
        if len(text) < 8 or (vr == "DA" and len(text) != 8):
            return None
        shifted = (day + dt.timedelta(days=days)).strftime("%Y%m%d")
        out.append(shifted + text[8:])
    return "\\".join(out)


class Engine:
    """One instance's application of a profile: holds the UID mapper, tokens, date shift and notes."""

    def __init__(
        self,
        profile: Profile,
        uids: UidMapper,
        tokens: Tokens,
        shift_days: int,
        notes: list[tuple[str, str]],
        *,
        implicit: bool = False,
        little: bool = True,
        codec: str | None = None,
    ) -> None:
        self.profile = profile
        self.uids = uids
        self.tokens = tokens
        self.token_set: TokenSet | None = None
        self.shift_days = shift_days
        self.notes = notes
        self.implicit = implicit
        self.little = little
        # Python codec of a single-byte or UTF-8 character set; None means "let pydicom decode" (ISO 2022).
        self.codec = codec
        # Clean Descriptors needs every token of the instance, so text cleaning waits for the walk to end.
        self._deferred: list[tuple[Dataset, int, str]] = []

    def finish(self, token_set: TokenSet) -> None:
        """Scrub the deferred descriptor values with the instance's complete token set."""
        self.token_set = token_set
        for ds, tag, vr in self._deferred:
            if tag in ds._dict:
                self._scrub(ds, tag, vr)
        self._deferred.clear()

    def raw(self, tag: int, vr: str, value: bytes) -> RawDataElement:
        """A raw element in this instance's encoding."""
        return raw_element(tag, vr, value, self.implicit, self.little)

    def apply(self, ds: Dataset) -> None:
        """De-identify ``ds`` in place (its nested sequences too) according to the profile."""
        profile = self.profile
        table_get = profile.table.get
        masks = profile.masks
        keep_vrs = profile.keep_unlisted_vrs
        keep_tags = profile.keep_unlisted_tags
        d = ds._dict
        private: list[int] = []
        tokens = self.tokens
        for tag, elem in list(d.items()):
            t = int(tag)
            group = t >> 16
            kind = TOKEN_KIND.get(t)
            if kind is None and elem.VR == "PN":
                # A person name under a private or unknown tag is still a person name of this instance.
                kind = "name"
            if group & 1:
                if kind is not None:
                    self._collect(ds, tag, elem, kind, tokens)
                private.append(t)
                continue
            if kind is not None:
                self._collect(ds, tag, elem, kind, tokens)
                elem = d[tag]
            if group <= 0x0002 or t & 0xFFFF == 0:
                # Command group, file meta in the wrong place, retired group lengths: never copied.
                del d[tag]
                continue
            action = table_get(t)
            if action is None and masks:
                for mask, value, act in masks:
                    if t & mask == value:
                        action = act
                        break
            vr = element_vr(t, elem)
            if vr in CHECKED_VRS and isinstance(elem, RawDataElement) and elem.value:
                text_bytes = elem.value.rstrip(b"\x00 ")
                if _CORRUPT.search(text_bytes):
                    # Control bytes in a text value: its length was corrupted and it swallowed the
                    # elements after it (their headers are binary). What it holds may identify the
                    # patient under a tag we no longer see: learn its text as tokens, keep none of it.
                    self._swallowed(text_bytes)
                    del d[tag]
                    continue
            if action is None:
                if vr == "SQ":
                    action = "K"
                elif vr == "UI":
                    action = "U"
                elif vr in DATE_VRS:
                    action = "K" if profile.full_dates else ("C" if profile.modified_dates else "X")
                elif vr in keep_vrs or t in keep_tags:
                    action = "K"
                else:
                    action = "X"
            if action == "K":
                # K on a UI comes only from an option (Retain UIDs / Device Identity): keep it as is.
                if vr == "SQ":
                    self._recurse(ds, t)
                continue
            if action == "X":
                if vr == "SQ" and kind is None:
                    self._collect_seq(ds, t)
                del d[tag]
            elif action == "U" or (action == "D" and vr == "UI"):
                if vr == "SQ":
                    self._recurse(ds, t)
                elif vr == "UI":
                    self._map_uid(ds, tag, elem)
                else:
                    del d[tag]
            elif action == "Z":
                if vr == "SQ":
                    if kind is None:
                        self._collect_seq(ds, t)
                    ds[t] = DataElement(t, "SQ", Sequence())
                else:
                    d[tag] = self.raw(t, vr, b"")
            elif action == "D":
                if vr == "SQ":
                    self._recurse(ds, t)
                else:
                    d[tag] = self.raw(t, vr, dummy_bytes(vr))
            elif action == "C":
                self._clean(ds, tag, vr)
            elif action == NOTE:
                self._note(ds, t)
                del d[tag]
            else:  # pragma: no cover - load_profile validates actions
                raise AssertionError(f"unknown action {action!r}")
        if private:
            self._private(ds, private)

    # -- actions -------------------------------------------------------------------------------
    def _collect(
        self, ds: Dataset, tag: BaseTag, elem: DataElement | RawDataElement, kind: str, tokens: Tokens
    ) -> None:
        codec = self.codec
        if codec is not None and isinstance(elem, RawDataElement) and elem.VR != "SQ" and elem.value:
            # Decoding the raw bytes directly is much cheaper than pydicom's element conversion.
            if elem.VR is None and DicomDictionary.get(int(tag), ("",))[0] == "SQ":
                collect_element(ds, int(tag), kind, tokens)
                return
            for part in elem.value.decode(codec, "replace").split("\\"):
                tokens.add_value(kind, part)
            return
        collect_element(ds, int(tag), kind, tokens)

    def _recurse(self, ds: Dataset, tag: int) -> None:
        value = ds[tag].value
        if isinstance(value, Sequence):
            for item in value:
                self.apply(item)

    def _swallowed(self, value: bytes) -> None:
        codec = self.codec or "latin-1"
        for run in _TEXT_RUN.findall(value):
            text = run.decode(codec, "replace")
            self.tokens.add_value("name", text)
            self.tokens.add_value("whole", text)

    def _collect_seq(self, ds: Dataset, tag: int) -> None:
        elem = ds._dict[tag]  # type: ignore[index]
        if self.codec is not None and isinstance(elem, RawDataElement) and elem.value is not None:
            try:
                collect_raw_sequence(elem.value, self.implicit, self.little, self.codec, self.tokens)
                return
            except RawScanError:
                log.debug("raw sequence scan fell back to pydicom")
        value = ds[tag].value
        if isinstance(value, Sequence):
            for item in value:
                collect_tokens(item, self.tokens)

    def _map_uid(self, ds: Dataset, tag: int, elem: DataElement | RawDataElement) -> None:
        if isinstance(elem, RawDataElement):
            raw = elem.value or b""
            text = raw.decode("ascii", "replace").strip("\x00 ")
        else:
            value = elem.value
            if isinstance(value, MultiValue | list):
                text = "\\".join(str(v) for v in value)
            else:
                text = "" if value is None else str(value)
        if not text:
            return
        mapped = self.uids.map_multi(text)
        key = tag if isinstance(tag, BaseTag) else BaseTag(tag)
        ds._dict[key] = self.raw(int(tag), "UI", pad(mapped.encode("ascii"), "UI"))

    def _clean(self, ds: Dataset, tag: BaseTag, vr: str) -> None:
        t = int(tag)
        if vr == "SQ":
            self._recurse(ds, t)
            return
        if vr in ("DA", "DT"):
            if self.profile.modified_dates:
                text = _as_text(ds[t].value)
                shifted = shift_date_value(text, vr, self.shift_days) if text else text
                if shifted is None:
                    del ds._dict[tag]
                else:
                    ds._dict[tag] = self.raw(t, vr, pad(shifted.encode("ascii"), vr))
            else:
                del ds._dict[tag]
            return
        if vr == "TM" or vr in NUMERIC_VRS or vr == "AS":
            return
        if vr in BINARY_VRS:
            # Binary values cannot be cleaned token by token: remove (fail safe).
            del ds._dict[tag]
            return
        if vr == "UI":
            self._map_uid(ds, tag, ds._dict[tag])
            return
        self._deferred.append((ds, t, vr))

    def _scrub(self, ds: Dataset, tag: int, vr: str) -> None:
        assert self.token_set is not None
        token_set = self.token_set
        key = tag if isinstance(tag, BaseTag) else BaseTag(tag)
        elem = ds._dict[key]
        # CS may not contain "*"; an emptied token keeps the value valid there.
        replacement = "" if vr == "CS" else "*"
        codec = self.codec
        if codec is not None and isinstance(elem, RawDataElement):
            # surrogateescape: bytes that do not decode survive the round trip unchanged.
            text = (elem.value or b"").decode(codec, "surrogateescape")
            if not token_set.contains_text(text):
                return  # nothing of this patient in it: keep the original bytes
            cleaned = token_set.scrub(text, replacement).rstrip(" ")
            ds._dict[key] = self.raw(tag, vr, pad(cleaned.encode(codec, "surrogateescape"), vr))
            return
        value = ds[tag].value
        scrub: Callable[[str, str], str] = token_set.scrub
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a scrubbed value may no longer match its VR's pattern
            if isinstance(value, MultiValue | list):
                ds[tag] = DataElement(tag, vr, [scrub(str(v), replacement) for v in value])
            elif value is not None:
                cleaned = scrub(str(value), replacement)
                if cleaned != str(value):
                    ds[tag] = DataElement(tag, vr, cleaned)

    def _note(self, ds: Dataset, tag: int) -> None:
        try:
            text = _as_text(ds[tag].value)
        except (ValueError, TypeError, LookupError):
            text = ""
        if text.strip():
            self.notes.append((keyword_for_tag(tag) or f"{tag:08X}", text.strip()))

    def _private(self, ds: Dataset, tags: list[int]) -> None:
        allow = self.profile.private_allow
        d = ds._dict
        if not allow:
            for t in tags:
                del d[t]  # type: ignore[arg-type]
            return
        creators: dict[tuple[int, int], str] = {}
        for t in tags:
            elem_no = t & 0xFFFF
            if 0x10 <= elem_no <= 0xFF:
                value = ds[t].value
                creators[(t >> 16, elem_no)] = str(value or "").strip().upper()
        kept_blocks: set[tuple[int, int]] = set()
        for t in tags:
            group, elem_no = t >> 16, t & 0xFFFF
            if elem_no < 0x1000:
                continue
            block = elem_no >> 8
            creator = creators.get((group, block))
            if creator is not None and (group, creator, elem_no & 0xFF) in allow:
                kept_blocks.add((group, block))
                elem = d[t]  # type: ignore[index]
                vr = elem.VR
                if vr == "SQ":
                    self._recurse(ds, t)
                elif vr == "UI":
                    self._map_uid(ds, t, elem)
                continue
            del d[t]  # type: ignore[arg-type]
        for t in tags:
            group, elem_no = t >> 16, t & 0xFFFF
            if elem_no < 0x1000 and (group, elem_no) not in kept_blocks:
                del d[t]  # type: ignore[arg-type]


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)
