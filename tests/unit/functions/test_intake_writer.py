"""The intake writer (behind the Orthanc plugin): PHI-free keys, metadata, spool on S3 failure."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.intake_writer import IntakeWriter, orthanc_instance_id
from adapters.research_access import allowed, basic_auth_user
from tests.fixtures.stack import wait_for


class FlakyS3:
    def __init__(self) -> None:
        self.down = False
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: Any, ContentType: str, Metadata: dict[str, str],
                   ) -> dict[str, Any]:
        if self.down:
            raise ConnectionError("endpoint unreachable")
        self.objects[Key] = (Body.read() if hasattr(Body, "read") else Body, Metadata)
        return {}


def test_keys_carry_no_phi_and_metadata_carries_the_calling_aet(tmp_path: Path) -> None:
    s3 = FlakyS3()
    writer = IntakeWriter("tmi-intake", "incoming", tmp_path / "spool", client_factory=lambda: s3)
    instance_id = orthanc_instance_id("PAT^ID", "1.2.3", "1.2.3.4", "1.2.3.4.5")
    key = writer.write(instance_id, b"DICM", "DEMO_MODALITY ")
    today = datetime.now(UTC)
    assert key == f"incoming/{today:%Y/%m/%d}/{instance_id}.dcm"
    assert "PAT" not in key
    assert s3.objects[key] == (b"DICM", {"calling-aet": "DEMO_MODALITY"})


def test_orthanc_instance_id_matches_orthancs_formula() -> None:
    digest = hashlib.sha1(b"P|1|2|3", usedforsecurity=False).hexdigest()
    assert orthanc_instance_id("P", "1", "2", "3") == "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def test_failed_puts_are_spooled_and_drained_later(tmp_path: Path) -> None:
    s3 = FlakyS3()
    writer = IntakeWriter("tmi-intake", "incoming/", tmp_path / "spool", client_factory=lambda: s3)
    s3.down = True
    key = writer.write("abc", b"DATA", "M1")
    assert s3.objects == {}
    assert writer.drain_spool() == 0  # still down: kept
    assert len(list((tmp_path / "spool").iterdir())) == 2
    s3.down = False
    assert writer.drain_spool() == 1
    assert s3.objects[key] == (b"DATA", {"calling-aet": "M1"})
    assert list((tmp_path / "spool").iterdir()) == []


def _basic(user: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:pw".encode()).decode()}


def test_research_access_is_read_only_for_researchers() -> None:
    writers = ["tmi-pipeline"]
    assert basic_auth_user(_basic("researcher")) == "researcher"
    assert allowed("GET", "/dicom-web/studies", _basic("researcher"), writers)
    assert allowed("POST", "/tools/find", _basic("researcher"), writers)
    assert not allowed("POST", "/instances", _basic("researcher"), writers)
    assert not allowed("DELETE", "/studies/x", _basic("researcher"), writers)
    assert not allowed("POST", "/dicom-web/studies", {}, writers)
    assert allowed("POST", "/dicom-web/studies", _basic("tmi-pipeline"), writers)
    assert allowed("DELETE", "/instances/x", _basic("tmi-pipeline"), writers)


def test_enqueue_spools_then_uploader_threads_put_and_clean_up(tmp_path: Path) -> None:
    import time

    s3 = FlakyS3()
    writer = IntakeWriter("tmi-intake", "incoming/", tmp_path / "spool", client_factory=lambda: s3)
    s3.down = True
    keys = [writer.enqueue(f"id{n}", b"D%d" % n, "M1") for n in range(3)]
    assert writer.pending() == 3  # spooled at once, whatever S3 does
    writer.start_uploaders(count=2, retry_s=0.05)
    time.sleep(0.2)
    assert s3.objects == {}
    s3.down = False
    deadline = time.monotonic() + 5
    while writer.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(s3.objects) == sorted(keys)
    assert list((tmp_path / "spool").iterdir()) == []


class ChunkReadingS3:
    """Consumes bodies the way an HTTP client does (in blocks), keeping only a digest."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.digests: dict[str, str] = {}

    def _consume(self, key: str, body: Any) -> None:
        if isinstance(body, bytes):
            self.digests[key] = hashlib.sha256(body).hexdigest()
            return
        digest = hashlib.sha256()
        for block in iter(lambda: body.read(65536), b""):
            digest.update(block)
        self.digests[key] = digest.hexdigest()

    def put_object(self, *, Bucket: str, Key: str, Body: Any, ContentType: str, Metadata: dict[str, str],
                   ) -> dict[str, Any]:
        self.calls.append("put_object")
        self._consume(Key, Body)
        return {}

    def upload_file(self, Filename: str, Bucket: str, Key: str, ExtraArgs: dict[str, Any], Config: Any,
                    ) -> None:
        self.calls.append("upload_file")
        assert ExtraArgs["Metadata"] == {"calling-aet": "M1"}
        with open(Filename, "rb") as body:
            self._consume(Key, body)


def test_large_spooled_files_are_uploaded_without_reading_them_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above MULTIPART_ABOVE the uploader hands the spool file's path to the client (boto3's upload_file,
    multipart); below it, one put_object with the open file. Either way the instance never becomes one
    bytes object in the Orthanc process again."""
    import os
    import tracemalloc

    import boto3.s3.transfer  # noqa: F401 - imported before measuring: its import is not the upload's

    from adapters import s3_upload

    monkeypatch.setattr(s3_upload, "MULTIPART_ABOVE", 1024 * 1024)
    s3 = ChunkReadingS3()
    writer = IntakeWriter("tmi-intake", "incoming/", tmp_path / "spool", client_factory=lambda: s3)
    data = os.urandom(16 * 1024 * 1024)
    key = writer.key_for("big")
    writer._spool(key, data, "M1")
    expected = hashlib.sha256(data).hexdigest()
    del data
    tracemalloc.start()
    try:
        assert writer.drain_spool() == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert s3.calls == ["upload_file"] and s3.digests[key] == expected
    assert peak < 4 * 1024 * 1024, peak
    small = writer.key_for("small")
    writer._spool(small, b"DICM" * 1000, "M1")
    assert writer.drain_spool() == 1
    assert s3.calls == ["upload_file", "put_object"]


def test_large_instances_are_handed_over_by_reference_and_streamed_from_orthancs_file(
    tmp_path: Path,
) -> None:
    """``enqueue_stored`` spools only a reference; the uploader streams the file the locator names (Orthanc's
    stored file), and removes the reference once it is uploaded."""
    import os

    stored = tmp_path / "orthanc-storage" / "ab" / "cd" / "abcd-uuid"
    stored.parent.mkdir(parents=True)
    data = os.urandom(3 * 1024 * 1024)
    stored.write_bytes(data)
    asked: list[tuple[str, int]] = []

    def locate(instance_id: str, size: int) -> Path:
        asked.append((instance_id, size))
        return stored

    s3 = ChunkReadingS3()
    writer = IntakeWriter("tmi-intake", "incoming/", tmp_path / "spool", client_factory=lambda: s3,
                          stored_file=locate)
    key = writer.enqueue_stored("big-id", len(data), "M1")
    spooled = [p.name for p in (tmp_path / "spool").iterdir()]
    assert spooled == [key.replace("/", "_") + ".json"]  # a reference, no copy of the instance
    assert (tmp_path / "spool" / spooled[0]).stat().st_size < 1024
    writer.start_uploaders(1, retry_s=0.05)
    wait_for(lambda: key in s3.digests and not list((tmp_path / "spool").iterdir()), 5, "the upload",
             interval_s=0.01)
    assert asked == [("big-id", len(data))]
    assert s3.digests[key] == hashlib.sha256(data).hexdigest()
    assert list((tmp_path / "spool").iterdir()) == []
    assert stored.read_bytes() == data  # Orthanc's file is left alone


def test_a_reference_whose_stored_file_has_gone_is_set_aside_not_retried_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from adapters.intake_writer import StoredFileGone

    def gone(instance_id: str, size: int) -> Path:
        raise StoredFileGone("deleted from Orthanc")

    s3 = ChunkReadingS3()
    writer = IntakeWriter("tmi-intake", "incoming/", tmp_path / "spool", client_factory=lambda: s3,
                          stored_file=gone)
    with caplog.at_level("ERROR"):
        key = writer.enqueue_stored("gone-id", 123, "M1")
        writer.start_uploaders(1, retry_s=0.05)
        wait_for(lambda: "is gone" in caplog.text and writer.pending() == 0, 5, "the reference set aside",
                 interval_s=0.01)
    assert s3.calls == []
    assert [p.name for p in (tmp_path / "spool" / "failed").iterdir()] == [key.replace("/", "_") + ".json"]
    assert not list((tmp_path / "spool").glob("*.json"))
    assert writer.pending() == 0 and writer.drain_spool() == 0
    assert "is gone" in caplog.text and key in caplog.text


def test_a_reference_left_by_a_restart_is_uploaded_by_the_next_writer(tmp_path: Path) -> None:
    stored = tmp_path / "stored.dcm"
    stored.write_bytes(b"DICM" * 100)
    first = IntakeWriter("tmi-intake", "incoming/", tmp_path / "spool", client_factory=FlakyS3,
                         stored_file=lambda i, n: stored)
    key = first.enqueue_stored("id-1", 400, "M1")  # no uploader thread ran: the process "died"
    s3 = FlakyS3()
    second = IntakeWriter("tmi-intake", "incoming/", tmp_path / "spool", client_factory=lambda: s3,
                          stored_file=lambda i, n: stored)
    assert second.pending() == 1 and second.drain_spool() == 1
    assert s3.objects[key] == (b"DICM" * 100, {"calling-aet": "M1"})


def test_spool_counts_name_the_backlog_and_the_references_set_aside(tmp_path: Path) -> None:
    from adapters.intake_writer import spool_counts

    spool = tmp_path / "spool"
    assert spool_counts(spool) == {"pending": 0, "failed": 0}  # no spool yet
    s3 = FlakyS3()
    s3.down = True
    writer = IntakeWriter("tmi-intake", "incoming/", spool, client_factory=lambda: s3)
    writer.write("a", b"DICM", "M1")  # the store is down: spooled
    writer.write("b", b"DICM", "M1")
    (spool / "failed").mkdir()
    (spool / "failed" / "x.json").write_text("{}")
    assert spool_counts(spool) == {"pending": 2, "failed": 1}
    assert writer.pending() == 2
