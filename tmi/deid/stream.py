"""Locate the top-level pixel data element in the source stream and copy its raw bytes in chunks.

The pixel data is never decoded or held in memory: the de-identifier parses the header with pydicom
(stopping before the pixel data), finds where the (7FE0,0010) element starts and ends in the source
(defined length, or encapsulated fragments scanned up to the sequence delimiter), and copies those bytes
unchanged after the rewritten header. The transfer syntax is preserved, so the bytes stay valid.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from dataclasses import dataclass
from typing import BinaryIO

from tmi.deid import reasons
from tmi.errors import PoisonInputError

CHUNK = 4 * 1024 * 1024
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_ITEM = 0xFFFEE000
_SEQ_DELIM = 0xFFFEE0DD


@dataclass(frozen=True, slots=True)
class PixelSpan:
    """Where the pixel data element (tag, header and value) lies in the source: ``[start, end)``."""

    tag: int
    start: int
    end: int
    encapsulated: bool
    value_length: int
    value_start: int = 0
    vr: str | None = None

    @property
    def declared_length(self) -> int:
        """The length field to write: the value length, or 0xFFFFFFFF when encapsulated."""
        return 0xFFFFFFFF if self.encapsulated else self.value_length


def locate_pixel_element(
    fp: BinaryIO, start: int, size: int, implicit: bool, little: bool
) -> PixelSpan | None:
    """Return the span of the pixel element starting at ``start``, or ``None`` if none starts there.

    Raises ``PoisonInputError(dicom.truncated)`` when the file ends before the declared length or the
    delimiter, and ``dicom.unparseable`` for malformed encapsulation.
    """
    endian = "<" if little else ">"
    fp.seek(start)
    head = fp.read(8)
    if len(head) < 8:
        if len(head) >= 4 and _tag(head, endian) in PIXEL_TAGS:
            raise PoisonInputError(reasons.TRUNCATED, "pixel data element header cut short")
        return None
    tag = _tag(head, endian)
    if tag not in PIXEL_TAGS:
        return None
    vr: str | None = None
    if not implicit and not head[4:6].isalpha():
        # Some writers encode the data set in implicit VR despite an explicit transfer syntax (pydicom
        # reads those by guessing); the pixel element then has no VR either.
        implicit = True
    if implicit:
        (length,) = struct.unpack(endian + "I", head[4:8])
        header_len = 8
    elif head[4:6] in _LONG_VRS:
        vr = head[4:6].decode("ascii")
        more = fp.read(4)
        if len(more) < 4:
            raise PoisonInputError(reasons.TRUNCATED, "pixel data element header cut short")
        (length,) = struct.unpack(endian + "I", more)
        header_len = 12
    else:
        vr = head[4:6].decode("ascii")
        (length,) = struct.unpack(endian + "H", head[6:8])
        header_len = 8
    value_start = start + header_len
    if length != 0xFFFFFFFF:
        end = value_start + length
        if end > size:
            raise PoisonInputError(
                reasons.TRUNCATED, f"pixel data declares {length} bytes but only {size - value_start} remain"
            )
        return PixelSpan(tag, start, end, False, length, value_start, vr)
    pos = value_start
    while True:
        fp.seek(pos)
        item = fp.read(8)
        if len(item) < 8:
            raise PoisonInputError(reasons.TRUNCATED, "encapsulated pixel data ends before its delimiter")
        item_tag = _tag(item, endian)
        (item_len,) = struct.unpack(endian + "I", item[4:8])
        if item_tag == _SEQ_DELIM:
            end = pos + 8
            return PixelSpan(tag, start, end, True, end - value_start, value_start, vr)
        if item_tag != _ITEM or item_len == 0xFFFFFFFF:
            raise PoisonInputError(reasons.UNPARSEABLE, f"malformed encapsulated pixel data at offset {pos}")
        pos += 8 + item_len
        if pos > size:
            raise PoisonInputError(
                reasons.TRUNCATED, "encapsulated pixel data fragment runs past end of file"
            )


def copy_span(
    src: BinaryIO, dst: BinaryIO, span: PixelSpan, chunk: int = CHUNK, *, value_only: bool = False
) -> int:
    """Copy ``span`` (or only its value, after the element header) from ``src`` to ``dst`` in chunks.

    Returns the number of bytes written.
    """
    first = span.value_start if value_only else span.start
    written = _kernel_copy(src, dst, first, span.end - first)
    src.seek(first + written)
    remaining = span.end - first - written
    while remaining > 0:
        block = src.read(min(chunk, remaining))
        if not block:
            raise PoisonInputError(reasons.TRUNCATED, "source shrank while copying pixel data")
        dst.write(block)
        written += len(block)
        remaining -= len(block)
    return written


def _kernel_copy(src: BinaryIO, dst: BinaryIO, offset: int, count: int) -> int:
    """Copy up to ``count`` bytes at ``offset`` of ``src`` to ``dst`` in the kernel; return the bytes done.

    When both streams are regular files, ``os.copy_file_range`` moves the pixel data without passing it
    through Python (as ``cp`` does), which is what keeps a 500 MB instance close to ``cp`` time. Anything
    else (in-memory buffers, pipes, a filesystem or kernel that refuses) returns what was done so far and
    the caller finishes with the chunked copy.
    """
    copy_file_range = getattr(os, "copy_file_range", None)
    if copy_file_range is None or count <= 0:
        return 0
    try:
        src_fd, dst_fd = src.fileno(), dst.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return 0
    if not (stat.S_ISREG(os.fstat(src_fd).st_mode) and stat.S_ISREG(os.fstat(dst_fd).st_mode)):
        return 0
    dst.flush()  # what the buffered writer holds goes first; the kernel then appends at the fd offset
    done = 0
    try:
        while done < count:
            n = copy_file_range(src_fd, dst_fd, count - done, offset + done)
            if n == 0:  # end of the source file: let the chunked path report the truncation
                break
            done += n
    except OSError:
        pass  # EXDEV, ENOSYS, EINVAL...: the chunked copy takes over from ``done``
    return done


def _tag(buf: bytes, endian: str) -> int:
    group, elem = struct.unpack(endian + "HH", buf[:4])
    return int(group << 16 | elem)
