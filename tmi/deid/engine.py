"""Apply a compiled profile to a pydicom data set, in place, element by element.

Speed matters (the core must stay close to a plain pydicom read+write): elements whose action is K are
left as undecoded ``RawDataElement`` and written back byte for byte; only elements that change are
decoded. Sequences are walked recursively with the same table (the standard applies it at any depth).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from pydicom._dicom_dict import DicomDictionary
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from tmi.deid.profile import NOTE, Profile
from tmi.deid.uids import UidMapper
from tmi.deid.verifier import TokenSet

log = logging.getLogger(__name__)

SCRUB_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
NUMERIC_VRS = frozenset({"AT", "DS", "FD", "FL", "IS", "SL", "SS", "SV", "UL", "US", "UV"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
DATE_VRS = frozenset({"DA", "DT", "TM"})
DUMMY_TEXT = "DEIDENTIFIED"
DUMMY: dict[str, object] = {
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
    "AT": 0,
    "FD": 0.0,
    "FL": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
    "OB": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "OW": b"\x00\x00",
    "UN": b"\x00\x00",
}


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
        tokens: TokenSet,
        shift_days: int,
        notes: list[tuple[str, str]],
    ) -> None:
        self.profile = profile
        self.uids = uids
        self.tokens = tokens
        self.shift_days = shift_days
        self.notes = notes
        self.actions_taken: dict[str, int] = {}

    def apply(self, ds: Dataset) -> None:
        """De-identify ``ds`` in place (its nested sequences too) according to the profile."""
        profile = self.profile
        table_get = profile.table.get
        masks = profile.masks
        keep_vrs = profile.keep_unlisted_vrs
        keep_tags = profile.keep_unlisted_tags
        d = ds._dict
        private: list[int] = []
        for tag, elem in list(d.items()):
            t = int(tag)
            group = t >> 16
            if group & 1:
                private.append(t)
                continue
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
                if vr == "SQ":
                    self._recurse(ds, t)
                elif vr == "UI" and not profile.options.get("rtnUIDsOpt"):
                    self._map_uid(ds, t, elem)
                continue
            if action == "X":
                del d[tag]
            elif action == "U" or (action == "D" and vr == "UI"):
                if vr == "SQ":
                    self._recurse(ds, t)
                elif vr == "UI":
                    self._map_uid(ds, t, elem)
                else:
                    del d[tag]
            elif action == "Z":
                if vr == "SQ":
                    ds[t] = DataElement(t, "SQ", Sequence())
                else:
                    ds[t] = DataElement(t, vr, None)
            elif action == "D":
                if vr == "SQ":
                    self._recurse(ds, t)
                else:
                    ds[t] = DataElement(t, vr, DUMMY.get(vr, DUMMY_TEXT))
            elif action == "C":
                self._clean(ds, t, vr)
            elif action == NOTE:
                self._note(ds, t)
                del d[tag]
            else:  # pragma: no cover - load_profile validates actions
                raise AssertionError(f"unknown action {action!r}")
        if private:
            self._private(ds, private)

    # -- actions -------------------------------------------------------------------------------
    def _recurse(self, ds: Dataset, tag: int) -> None:
        value = ds[tag].value
        if isinstance(value, Sequence):
            for item in value:
                self.apply(item)

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
        ds[tag] = DataElement(tag, "UI", mapped.split("\\") if "\\" in mapped else mapped)

    def _clean(self, ds: Dataset, tag: int, vr: str) -> None:
        if vr == "SQ":
            self._recurse(ds, tag)
            return
        if vr in ("DA", "DT"):
            if self.profile.modified_dates:
                elem = ds[tag]
                text = _as_text(elem.value)
                shifted = shift_date_value(text, vr, self.shift_days) if text else text
                if shifted is None:
                    del ds[tag]
                else:
                    ds[tag] = DataElement(tag, vr, shifted)
            else:
                del ds[tag]
            return
        if vr == "TM" or vr in NUMERIC_VRS or vr == "AS":
            return
        if vr in BINARY_VRS:
            # Binary values cannot be cleaned token by token: remove (fail safe).
            del ds[tag]
            return
        if vr == "UI":
            self._map_uid(ds, tag, ds.get_item(tag))
            return
        elem = ds[tag]
        value = elem.value
        scrub: Callable[[str], str] = self.tokens.scrub
        if isinstance(value, MultiValue | list):
            elem.value = [scrub(str(v)) for v in value]
        elif value is not None:
            cleaned = scrub(str(value))
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
