"""A lean serialiser for the de-identified header.

pydicom's ``write_dataset`` costs ~20 µs per element (a buffer object, context managers and property
look-ups each time), more than the whole de-identification of that element. Most elements of a
de-identified header are ``RawDataElement`` (kept verbatim or replaced by pre-encoded bytes), which this
module writes with one ``struct.pack`` each; parsed sequences are written item by item with undefined
lengths; anything else falls back to pydicom's own element writer, so the bytes stay what pydicom would
write. Group lengths are never written (retired, and they would go stale).
"""

from __future__ import annotations

import struct

from pydicom._dicom_dict import DicomDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence

_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_ITEM = 0xFFFEE000
_ITEM_DELIM = 0xFFFEE00D
_SEQ_DELIM = 0xFFFEE0DD


class HeaderWriter:
    """Serialise data sets in one fixed encoding (implicit/explicit VR, little/big endian)."""

    def __init__(self, implicit: bool, little: bool) -> None:
        self.implicit = implicit
        self.little = little
        endian = "<" if little else ">"
        self._tag_len = struct.Struct(endian + "HHL")  # implicit: tag + 4-byte length
        self._short = struct.Struct(endian + "HH2sH")  # explicit, 2-byte length
        self._long = struct.Struct(endian + "HH2s2xL")  # explicit, reserved + 4-byte length

    def element_head(self, tag: int, vr: str, length: int) -> bytes:
        """Encoded tag (+ VR) + length of one element."""
        return self._head(tag, vr, length)

    def _head(self, tag: int, vr: str, length: int) -> bytes:
        group, elem = tag >> 16, tag & 0xFFFF
        if self.implicit:
            return self._tag_len.pack(group, elem, length)
        if vr in _LONG_VRS or length == 0xFFFFFFFF:
            return self._long.pack(group, elem, vr.encode("ascii"), length)
        return self._short.pack(group, elem, vr.encode("ascii"), length)

    def dataset(self, ds: Dataset, encodings: str | list[str], out: bytearray) -> None:
        """Append the encoding of ``ds`` (elements in tag order) to ``out``."""
        d = ds._dict
        charset = d.get(0x00080005)  # type: ignore[call-overload]
        if charset is not None:
            # Nested items rarely carry their own SpecificCharacterSet; when they do it governs them.
            value = ds[0x00080005].value
            encodings = str(value) if isinstance(value, str) else [str(v) for v in value]
        for tag in sorted(d, key=int):
            t = int(tag)
            if t & 0xFFFF == 0:
                continue
            elem = d[tag]
            if isinstance(elem, RawDataElement):
                self._raw(t, elem, out)
            elif elem.VR == "SQ" and isinstance(elem.value, Sequence):
                self._sequence(t, elem.value, encodings, out)
            else:
                self._fallback(elem, encodings, out)

    def _raw(self, tag: int, elem: RawDataElement, out: bytearray) -> None:
        value = elem.value or b""
        vr = elem.VR
        if vr is None:
            entry = DicomDictionary.get(tag)
            vr = entry[0].split(" or ")[0] if entry else "UN"
        if elem.length == 0xFFFFFFFF:
            # Undefined-length non-sequence value (pydicom kept the bytes up to the delimiter).
            out += self._head(tag, vr, 0xFFFFFFFF)
            out += value
            out += self._tag_len.pack(_SEQ_DELIM >> 16, _SEQ_DELIM & 0xFFFF, 0)
            return
        length = len(value)
        if not self.implicit and vr not in _LONG_VRS and length > 0xFFFF:
            vr = "UN"  # PS3.5 6.2.2: too long for a 2-byte length field
        out += self._head(tag, vr, length)
        out += value

    def _sequence(self, tag: int, items: Sequence, encodings: str | list[str], out: bytearray) -> None:
        pack = self._tag_len.pack
        out += self._head(tag, "SQ", 0xFFFFFFFF)
        for item in items:
            out += pack(_ITEM >> 16, _ITEM & 0xFFFF, 0xFFFFFFFF)
            self.dataset(item, encodings, out)
            out += pack(_ITEM_DELIM >> 16, _ITEM_DELIM & 0xFFFF, 0)
        out += pack(_SEQ_DELIM >> 16, _SEQ_DELIM & 0xFFFF, 0)

    def _fallback(self, elem: DataElement, encodings: str | list[str], out: bytearray) -> None:
        buf = DicomBytesIO()
        buf.is_implicit_VR = self.implicit
        buf.is_little_endian = self.little
        write_data_element(buf, elem, encodings)
        out += buf.getvalue()
