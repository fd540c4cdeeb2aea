"""The intake writer's uploads against a real S3 endpoint (moto's server over HTTP): a spooled file goes up
as one PUT, or as a multipart upload above the threshold, and the object equals the file byte for byte
(that the file is not read whole is checked in tests/unit/functions/test_intake_writer.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from adapters import s3_upload
from adapters.intake_writer import CALLING_AET_METADATA, IntakeWriter

pytestmark = pytest.mark.integration


def _spooled_file(writer: IntakeWriter, size: int) -> tuple[str, str]:
    """Spool ``size`` random bytes the way the plugin does; return (key, sha256)."""
    digest = hashlib.sha256()
    data = bytearray()
    while len(data) < size:
        block = os.urandom(min(1024 * 1024, size - len(data)))
        digest.update(block)
        data += block
    key = writer.key_for("large-instance")
    writer._spool(key, bytes(data), "DEMO_MODALITY")
    return key, digest.hexdigest()


@pytest.mark.parametrize("multipart_above", [s3_upload.MULTIPART_ABOVE, 8 * 1024 * 1024])
def test_spooled_instance_uploads_intact(s3_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         multipart_above: int) -> None:
    """20 MB: one PUT streamed from the spool file, or a multipart upload when the threshold is lowered
    below it."""
    assert 20 * 1024 * 1024 < s3_upload.MULTIPART_ABOVE
    monkeypatch.setattr(s3_upload, "MULTIPART_ABOVE", multipart_above)
    s3_client.create_bucket(Bucket="tmi-intake")
    writer = IntakeWriter("tmi-intake", "incoming/", tmp_path / "spool", client_factory=lambda: s3_client)
    key, sha = _spooled_file(writer, 20 * 1024 * 1024)
    assert writer.drain_spool() == 1
    head = s3_client.head_object(Bucket="tmi-intake", Key=key)
    assert head["Metadata"] == {CALLING_AET_METADATA: "DEMO_MODALITY"}
    assert head["ContentType"] == "application/dicom"
    multipart = head["ETag"].strip('"').count("-") == 1  # S3's multipart ETag: "<md5>-<parts>"
    assert multipart == (multipart_above < 20 * 1024 * 1024)
    body = s3_client.get_object(Bucket="tmi-intake", Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(1024 * 1024), b""):
        digest.update(chunk)
    assert digest.hexdigest() == sha
    assert list((tmp_path / "spool").iterdir()) == []
