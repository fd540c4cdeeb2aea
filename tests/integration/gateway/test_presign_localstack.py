"""The LocalStack lane: a signature-checking S3 accepts the gateway's presigned URLs and refuses tampered
or expired ones; ``tmi download`` renews expired URLs through the gateway and completes."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from adapters.db import catalog
from gateway.presign import Presigner
from tests.integration.gateway.conftest import make_tokens

pytestmark = [pytest.mark.integration, pytest.mark.localstack]


@dataclass
class Lane:
    client: Any
    s3: Any
    bucket: str
    body: bytes
    key: str
    token: str
    dsn: str


@pytest.fixture
def lane(gateway_dsn: str, localstack_s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lane]:
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.services import Services
    from tmi.settings import Settings

    bucket = f"tmi-research-{secrets.token_hex(4)}"
    monkeypatch.setenv("TMI_RESEARCH_BUCKET", bucket)
    monkeypatch.setenv("TMI_PRESIGN_EXPIRY_S", "5")
    localstack_s3.create_bucket(Bucket=bucket)
    body = b"DICM" + secrets.token_bytes(5000)
    key = "TMI-0123456789/2.25.1/2.25.1.1/2.25.1.1.1.dcm"
    localstack_s3.put_object(Bucket=bucket, Key=key, Body=body)
    with psycopg.connect(gateway_dsn, autocommit=True) as conn:
        catalog.upsert_instance(
            conn,
            catalog.CatalogEntry(
                sop_instance_uid="2.25.1.1.1",
                series_instance_uid="2.25.1.1",
                study_instance_uid="2.25.1",
                pseudonym="TMI-0123456789",
                bucket_key=key,
                size_bytes=len(body),
                sha256=hashlib.sha256(body).hexdigest(),
                modality="MG",
            ),
        )
    settings = Settings(database_url=gateway_dsn)
    app = create_app(settings, Services(settings, dsn=gateway_dsn))
    with TestClient(app) as client:
        yield Lane(
            client=client,
            s3=localstack_s3,
            bucket=bucket,
            body=body,
            key=key,
            token=make_tokens(gateway_dsn)["researcher"],
            dsn=gateway_dsn,
        )


def _manifest_url(lane: Lane) -> str:
    response = lane.client.post(
        "/research/cohorts", headers={"Authorization": f"Bearer {lane.token}"}, json={}
    )
    assert response.status_code == 200
    (item,) = response.json()["instances"]
    return str(item["url"])


def test_presigned_url_works_and_tampering_is_refused(lane: Lane) -> None:
    url = _manifest_url(lane)
    ok = requests.get(url, timeout=10)
    assert ok.status_code == 200 and ok.content == lane.body, ok.text[:500]
    lane.s3.put_object(Bucket=lane.bucket, Key="TMI-0123456789/other.dcm", Body=b"secret")
    tampered_key = url.replace("2.25.1.1.1.dcm", "other.dcm")
    signature = url.rsplit("=", 1)[1]
    tampered_sig = url[: -len(signature)] + ("0" if signature[0] != "0" else "1") + signature[1:]
    longer = url.replace("X-Amz-Expires=5", "X-Amz-Expires=604800")
    for bad in (tampered_key, tampered_sig, longer):
        refused = requests.get(bad, timeout=10)
        assert refused.status_code == 403, bad


def test_expired_url_is_refused(lane: Lane) -> None:
    url = _manifest_url(lane)  # TMI_PRESIGN_EXPIRY_S=5
    time.sleep(6.5)
    assert requests.get(url, timeout=10).status_code == 403
    old = Presigner.from_client(lane.s3, lane.bucket, 60, now=datetime.now(UTC) - timedelta(hours=1))
    assert requests.get(old.url(lane.key), timeout=10).status_code == 403


def test_download_renews_expired_urls_via_the_gateway(lane: Lane, tmp_path: Path) -> None:
    import threading

    import uvicorn

    from adapters.cli.download import Downloader, UrlBook, load_manifest
    from tests.conftest import free_port

    response = lane.client.post(
        "/research/cohorts", headers={"Authorization": f"Bearer {lane.token}"}, json={}
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(lane.client.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        manifest = response.json()
        manifest["api_url"] = f"http://127.0.0.1:{port}"
        path = tmp_path / "m.json"
        path.write_text(json.dumps(manifest))
        time.sleep(6.5)  # every URL in the manifest has expired now
        items, api = load_manifest(path)
        book = UrlBook(items, api, lane.token)
        book.url = lambda key: book._urls[key]  # type: ignore[method-assign] # skip the early renewal: hit the 403
        summary = Downloader(tmp_path / "out", book).run(items, parallel=2)
        assert summary.ok and summary.represigned == 1, summary
        assert (tmp_path / "out" / lane.key).read_bytes() == lane.body
    finally:
        server.should_exit = True
        thread.join(timeout=10)
