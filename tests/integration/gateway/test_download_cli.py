"""``tmi download`` against a live gateway and the moto S3 server: parallel download, resume, checksum
verification, re-presigning of expired URLs, and the exit status."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.cli import main
from adapters.cli.download import Downloader, UrlBook, load_manifest
from gateway.presign import Presigner
from tests.integration.gateway.conftest import LiveGateway

pytestmark = pytest.mark.integration


def _manifest(live: LiveGateway, tmp_path: Path, body: dict | None = None, fmt: str = "json") -> Path:
    g = live.gateway
    response = g.client.post(
        "/research/cohorts", headers=g.auth(g.researcher), params={"format": fmt}, json=body or {}
    )
    assert response.status_code == 200
    path = tmp_path / f"cohort.{fmt}"
    path.write_bytes(response.content)
    return path


def _verify_tree(root: Path, objects: dict[str, bytes], keys: list[str]) -> None:
    for key in keys:
        assert (root / key).read_bytes() == objects[key]
    assert not list(root.rglob("*.part"))


def test_download_everything_then_nothing_to_do(
    live_gateway: LiveGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(live_gateway, tmp_path)
    out = tmp_path / "data"
    assert main(["download", str(manifest), "--to", str(out), "--parallel", "4", "--no-progress"]) == 0
    _verify_tree(out, live_gateway.gateway.objects, list(live_gateway.gateway.objects))
    first = capsys.readouterr().out
    assert "downloaded  12" in first and "all instances present and verified" in first
    assert main(["download", str(manifest), "--to", str(out), "--no-progress"]) == 0
    assert "already ok  12" in capsys.readouterr().out


def test_csv_manifest_works_too(live_gateway: LiveGateway, tmp_path: Path) -> None:
    manifest = _manifest(live_gateway, tmp_path, {"laterality": ["L"]}, fmt="csv")
    out = tmp_path / "csv"
    assert main(["download", str(manifest), "--to", str(out), "--no-progress"]) == 0
    assert len(list(out.rglob("*.dcm"))) == 6


def test_resume_after_interruption_and_repair_corrupt_parts(
    live_gateway: LiveGateway, tmp_path: Path
) -> None:
    objects = live_gateway.gateway.objects
    manifest = _manifest(live_gateway, tmp_path)
    items, api = load_manifest(manifest)
    out = tmp_path / "resume"
    complete, half, corrupt = items[0], items[1], items[2]
    (out / complete.key).parent.mkdir(parents=True, exist_ok=True)
    (out / complete.key).write_bytes(objects[complete.key])
    half_bytes = objects[half.key][: half.size // 2]
    (out / half.key).parent.mkdir(parents=True, exist_ok=True)
    (out / (half.key + ".part")).write_bytes(half_bytes)
    (out / (corrupt.key + ".part")).write_bytes(b"X" * (corrupt.size // 3))
    downloader = Downloader(out, UrlBook(items, api, None))
    summary = downloader.run(items, parallel=3)
    assert summary.ok and summary.skipped == 1 and summary.downloaded == len(items) - 1
    assert summary.resumed >= 1
    expected_bytes = sum(i.size for i in items[1:]) - len(half_bytes)
    # the half file was continued with a range request; the corrupt part was continued too (nothing tells
    # it is corrupt before the checksum), failed verification, and was fetched again in full
    assert summary.bytes_fetched == expected_bytes + (corrupt.size - corrupt.size // 3)
    _verify_tree(out, objects, [i.key for i in items])


def test_expired_urls_are_presigned_again_through_the_api(
    live_gateway: LiveGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = live_gateway.gateway
    manifest = json.loads(_manifest(live_gateway, tmp_path).read_text())
    old = Presigner.from_client(g.s3, g.bucket, 60, now=datetime.now(UTC) - timedelta(hours=2))
    for item in manifest["instances"]:
        item["url"] = old.url(item["key"])
    manifest["api_url"] = live_gateway.url
    path = tmp_path / "expired.json"
    path.write_text(json.dumps(manifest))
    out = tmp_path / "expired"
    monkeypatch.delenv("TMI_API_TOKEN", raising=False)
    assert main(["download", str(path), "--to", str(out), "--no-progress"]) == 1  # no token: cannot renew
    assert not list(out.rglob("*.dcm"))
    monkeypatch.setenv("TMI_API_TOKEN", g.researcher)
    items, api = load_manifest(path)
    summary = Downloader(out, UrlBook(items, api, g.researcher)).run(items, parallel=4)
    assert summary.ok and summary.represigned == len(items)
    assert len(g.audit_rows("research.presign")) <= 2  # batched, not one call per URL
    assert main(["download", str(path), "--to", str(out / "again"), "--no-progress"]) == 0


def test_checksum_mismatch_and_unsafe_keys_fail_with_summary(
    live_gateway: LiveGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads(_manifest(live_gateway, tmp_path, {"laterality": ["R"]}).read_text())
    bad = manifest["instances"][0]
    bad["sha256"] = hashlib.sha256(b"something else").hexdigest()
    manifest["instances"].append({**manifest["instances"][1], "key": "../outside.dcm"})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(manifest))
    out = tmp_path / "bad"
    assert main(["download", str(path), "--to", str(out), "--no-progress", "--retries", "2"]) == 1
    report = capsys.readouterr().out
    assert "FAILED      2" in report and "checksum mismatch" in report and "unsafe key" in report
    assert not (out / bad["key"]).exists() and not (tmp_path / "outside.dcm").exists()
    assert len(list(out.rglob("*.dcm"))) == 5
