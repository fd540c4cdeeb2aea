"""Streaming: pixel data is copied raw in chunks, never decoded; memory does not grow with file size."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from tests.unit.deid.helpers import base_dataset, run, to_file
from tmi.deid import Deidentifier

ROOT = Path(__file__).resolve().parents[3]


def _write_large_multiframe(path: Path, frames: int, rows: int, columns: int) -> str:
    """Write header + native pixel data (in chunks, never in memory); return the pixel bytes' SHA-256."""
    ds = base_dataset(rows=rows, columns=columns)
    del ds.PixelData
    ds.NumberOfFrames = frames
    header = to_file(ds)
    frame_len = rows * columns * 2
    total = frame_len * frames
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        fh.write(header)
        fh.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, total))
        for frame in range(frames):
            block = bytes([frame % 251]) * 1024 + bytes(range(256)) * 4
            chunk = (block * (frame_len // len(block) + 1))[:frame_len]
            digest.update(chunk)
            fh.write(chunk)
    return digest.hexdigest()


def _pixel_digest(path: Path) -> str:
    with path.open("rb") as fh:
        pydicom.dcmread(fh, stop_before_pixels=True)
        head = fh.read(12)
        assert head[:4] == b"\xe0\x7f\x10\x00"
        (length,) = struct.unpack("<L", head[8:12])
        digest = hashlib.sha256()
        remaining = length
        while remaining:
            block = fh.read(min(1 << 22, remaining))
            assert block
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


# Peak RSS is read from /proc/self/status (VmHWM, this process's own address space). ru_maxrss is not
# usable here: Linux carries the parent's high-water mark across fork/vfork + exec, so a child of a large
# pytest process would report the parent's peak.
_CHILD = """
import json, sys
def vm_hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")
from tmi.deid import Deidentifier, OfflinePseudonymProvider, load_profile
key = bytes(range(32))
deid = Deidentifier(load_profile("clinic-research"), key, OfflinePseudonymProvider(key))
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as dst:
    result = deid.deidentify(src, dst)
print(json.dumps({"outcome": result.outcome, "reason": result.reason, "bytes": result.bytes_written,
                  "maxrss_kb": vm_hwm_kb()}))
"""


@pytest.mark.slow
def test_large_multiframe_streams_with_bounded_memory(tmp_path: Path) -> None:
    src = tmp_path / "big.dcm"
    dst = tmp_path / "out.dcm"
    frames, rows, columns = 100, 1024, 1024  # 2 MiB per frame, 200 MiB of pixel data
    expected = _write_large_multiframe(src, frames, rows, columns)
    assert src.stat().st_size > 200 * 1024 * 1024
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(dst)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["outcome"] == "written", report
    assert report["maxrss_kb"] < 100 * 1024, report  # peak RSS of the whole interpreter, well under 100 MB
    assert _pixel_digest(dst) == expected
    assert report["bytes"] == dst.stat().st_size
    out = pydicom.dcmread(dst, stop_before_pixels=True)
    assert out.NumberOfFrames == frames and out.PatientName != "Zebulonsky^Quixotea"


@pytest.mark.parametrize(
    "name", ["JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG-lossy.dcm", "MR_small_RLE.dcm"]
)
def test_encapsulated_pixel_data_copied_raw(deid: Deidentifier, name: str) -> None:
    path = get_testdata_file(name)
    original = pydicom.dcmread(path)
    original.BurnedInAnnotation = "NO"  # SC test files would otherwise be quarantined as burn-in prone
    if "PatientID" not in original or not original.PatientID:
        original.PatientID = "TESTPATIENT"
    buf = io.BytesIO()
    original.save_as(buf)
    result, data = run(deid, buf.getvalue())
    assert result.outcome == "written", (result.reason, result.detail)
    out = pydicom.dcmread(io.BytesIO(data))
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert out["PixelData"].is_undefined_length
    assert out.PixelData == original.PixelData  # fragments byte for byte (never decoded)


def test_big_endian_and_implicit_samples_keep_pixels(deid: Deidentifier) -> None:
    for name in ("MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm"):
        path = get_testdata_file(name)
        result, data = run(deid, Path(path).read_bytes())
        assert result.outcome == "written", (name, result.reason, result.detail)
        out = pydicom.dcmread(io.BytesIO(data))
        original = pydicom.dcmread(path)
        assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert out.PixelData == original.PixelData
        assert out.Rows == original.Rows


def test_dataset_without_pixel_data(deid: Deidentifier) -> None:
    ds = base_dataset()
    del ds.PixelData
    ds.add_new(0x00081115, "SQ", [Dataset()])
    result, data = run(deid, to_file(ds))
    assert result.outcome == "written", result.detail
    assert "PixelData" not in pydicom.dcmread(io.BytesIO(data))


def test_deflated_transfer_syntax_round_trip(deid: Deidentifier) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = base_dataset(rows=8, columns=8)
    result, data = run(deid, to_file(ds, DeflatedExplicitVRLittleEndian))
    assert result.outcome == "written", (result.reason, result.detail)
    assert b"Zebulonsky" not in data
    out = pydicom.dcmread(io.BytesIO(data))
    assert out.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert out.PixelData == ds.PixelData and out.PatientID == result.assignment.pseudonym
    assert out.SOPInstanceUID == result.research.sop_instance_uid == out.file_meta.MediaStorageSOPInstanceUID
    assert result.catalog["transfer_syntax"] == DeflatedExplicitVRLittleEndian
    # PHI inside the compressed stream is still found by the verifier (it scans the inflated header).
    leaky = base_dataset(rows=8, columns=8)
    leaky.ImageComments = "comment"
    leaky.add_new(0x00091010, "LO", "x")  # private, removed
    leaky.DerivationDescription = "Zebulonsky"  # cleaned by Clean Descriptors
    result, data = run(deid, to_file(leaky, DeflatedExplicitVRLittleEndian))
    assert result.outcome == "written" and b"Zebulonsky" not in zlib_inflate(data)


def zlib_inflate(data: bytes) -> bytes:
    import struct
    import zlib

    meta_end = 144 + struct.unpack("<L", data[140:144])[0]
    return zlib.decompress(data[meta_end:], -zlib.MAX_WBITS)


def _with_big_elements(path: Path, private_mb: int, lut_bytes: int) -> bytes:
    """An instance with a large private blob and a large allow-listed LUT before the pixel data."""
    ds = base_dataset(rows=8, columns=8)
    lut = bytes(range(256)) * (lut_bytes // 256)
    ds.RedPaletteColorLookupTableData = lut
    header = to_file(ds)
    pixel_at = header.index(b"\xe0\x7f\x10\x00")
    with path.open("wb") as fh:
        fh.write(header[:pixel_at])
        # (0029,0010) creator + (0029,1010) OB of ``private_mb`` MiB, written in chunks
        fh.write(struct.pack("<HH2sH", 0x0029, 0x0010, b"LO", 8) + b"ACME 1.0")
        fh.write(struct.pack("<HH2sHL", 0x0029, 0x1010, b"OB", 0, private_mb << 20))
        block = b"Zebulonsky" * 104857 + b"\x00" * 6
        for _ in range(private_mb):
            fh.write(block)
        fh.write(header[pixel_at:])
    return lut


@pytest.mark.slow
def test_large_elements_before_pixels_are_not_loaded(tmp_path: Path) -> None:
    src, dst = tmp_path / "blob.dcm", tmp_path / "out.dcm"
    lut = _with_big_elements(src, 120, 2 << 20)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(dst)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["outcome"] == "written", report
    assert report["maxrss_kb"] < 100 * 1024, report  # the 120 MiB private blob was never read
    out = pydicom.dcmread(dst)
    assert 0x00291010 not in out
    assert out.RedPaletteColorLookupTableData == lut  # a kept large value is read and written intact
    assert out.PixelData == base_dataset(rows=8, columns=8).PixelData


def test_truncated_inside_a_large_element(deid: Deidentifier, tmp_path: Path) -> None:
    src = tmp_path / "blob.dcm"
    _with_big_elements(src, 2, 1024)
    data = src.read_bytes()
    result, written = run(deid, data[: len(data) // 2])
    assert (result.outcome, result.reason) == ("quarantined", "dicom.truncated") and written == b""


def _file_round_trip(deid: Deidentifier, data: bytes, tmp_path: Path) -> bytes:
    """De-identify ``data`` from a real file into a real file (the in-kernel copy path)."""
    src, dst = tmp_path / "in.dcm", tmp_path / "out.dcm"
    src.write_bytes(data)
    with src.open("rb") as fin, dst.open("wb") as fout:
        result = deid.deidentify(fin, fout)
        fout.flush()
        assert fout.tell() == result.bytes_written  # the writer's position follows the kernel's copy
    assert result.outcome == "written", result
    assert result.bytes_written == dst.stat().st_size
    return dst.read_bytes()


def test_file_to_file_output_equals_in_memory_output(deid: Deidentifier, tmp_path: Path) -> None:
    """The in-kernel pixel copy (files) and the chunked copy (buffers) produce the same bytes."""
    ds = base_dataset(rows=64, columns=64)
    ds.add_new(0x00091001, "LO", "private trailing value")  # removed: nothing after the pixels
    data = to_file(ds)
    _, in_memory = run(deid, data)
    assert _file_round_trip(deid, data, tmp_path) == in_memory


def test_kernel_copy_failing_halfway_falls_back_to_chunks(
    deid: Deidentifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem that refuses part-way (EXDEV, ENOSYS...) still yields the complete, identical output."""
    import os

    data = to_file(base_dataset(rows=128, columns=128))
    _, expected = run(deid, data)
    real = os.copy_file_range
    calls: list[int] = []

    def flaky(src_fd: int, dst_fd: int, count: int, offset_src: int | None = None) -> int:
        calls.append(count)
        if len(calls) == 1:
            return int(real(src_fd, dst_fd, min(count, 1000), offset_src))
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", flaky)
    assert _file_round_trip(deid, data, tmp_path) == expected
    assert len(calls) == 2  # the kernel path was really taken, then abandoned
