"""/research against real PostgreSQL and the moto S3 server: search, manifests, presigned downloads."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest
import requests

from tests.integration.gateway.conftest import Gateway

pytestmark = pytest.mark.integration


def test_studies_filters_sort_and_keyset_pages(gateway: Gateway) -> None:
    h = gateway.auth(gateway.researcher)
    everything = gateway.client.get("/research/studies", headers=h).json()
    assert len(everything["items"]) == 3 and everything["next_cursor"] is None
    assert [s["study_date"] for s in everything["items"]] == sorted(
        (s["study_date"] for s in everything["items"]), reverse=True
    )
    # two pages of one + a last page, in age order, never repeating a study
    seen, cursor = [], None
    for _ in range(5):
        params = {"sort": "age_years", "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = gateway.client.get("/research/studies", headers=h, params=params).json()
        seen += [s["age_years"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [40, 45, 50]
    older = gateway.client.get(
        "/research/studies", headers=h, params={"age_min": 44, "laterality": "R"}
    ).json()
    assert {s["age_years"] for s in older["items"]} == {45, 50}
    none = gateway.client.get("/research/studies", headers=h, params={"modality": "CT"}).json()
    assert none["items"] == []
    bad = gateway.client.get(
        "/research/studies", headers=h, params={"cursor": "garbage", "sort": "pseudonym"}
    )
    assert bad.status_code == 400


def test_manifest_json_downloads_and_verifies(gateway: Gateway) -> None:
    h = gateway.auth(gateway.researcher)
    response = gateway.client.post("/research/cohorts", headers=h, json={"view_position": ["CC"]})
    assert response.status_code == 200, response.text
    manifest = response.json()
    assert manifest["count"] == len(manifest["instances"]) == 6  # 3 studies x (L-CC, R-CC)
    assert manifest["api_url"] == "http://testserver"
    assert response.headers["x-tmi-manifest-id"] == manifest["manifest_id"]
    for item in manifest["instances"]:
        body = requests.get(item["url"], timeout=10)
        assert body.status_code == 200
        assert hashlib.sha256(body.content).hexdigest() == item["sha256"]
        assert len(body.content) == item["size"] == len(gateway.objects[item["key"]])
    rows = gateway.audit_rows("research.manifest")
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"].startswith("token:") and row["role"] == "researcher"
    assert row["target_id"] == manifest["manifest_id"]
    assert row["detail"]["instances"] == 6 and row["detail"]["filters"] == {"view_position": ["CC"]}


def test_manifest_csv_by_accept_header_and_by_format(gateway: Gateway) -> None:
    h = gateway.auth(gateway.researcher)
    by_accept = gateway.client.post("/research/cohorts", headers={**h, "Accept": "text/csv"}, json={})
    by_param = gateway.client.post("/research/cohorts", params={"format": "csv"}, headers=h, json={})
    for response in (by_accept, by_param):
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == 12
        assert set(rows[0]) >= {"key", "size", "sha256", "url"}
    assert len(gateway.audit_rows("research.manifest")) == 2


def test_presign_again_only_for_published_keys(gateway: Gateway) -> None:
    h = gateway.auth(gateway.researcher)
    key = sorted(gateway.objects)[0]
    response = gateway.client.post(
        "/research/presign", headers=h, json={"keys": [key, "incoming/secret.dcm", "../../etc/passwd"]}
    )
    assert response.status_code == 200
    out = response.json()
    assert list(out["urls"]) == [key]
    assert sorted(out["unknown"]) == ["../../etc/passwd", "incoming/secret.dcm"]
    assert requests.get(out["urls"][key], timeout=10).content == gateway.objects[key]
    assert gateway.audit_rows("research.presign")[0]["detail"] == {"requested": 3, "signed": 1}


def test_cohort_count_and_facets(gateway: Gateway) -> None:
    h = gateway.auth(gateway.researcher)
    counts = gateway.client.post("/research/cohorts/count", headers=h, json={"laterality": ["L"]}).json()
    assert counts["studies"] == 3 and counts["instances"] == 6
    facets = gateway.client.get("/research/facets", headers=h).json()
    assert facets["view_position"] == ["CC", "MLO"] and facets["laterality"] == ["L", "R"]


def test_unknown_filter_field_is_refused(gateway: Gateway) -> None:
    h = gateway.auth(gateway.researcher)
    response = gateway.client.post("/research/cohorts", headers=h, json={"patient_name": "Doe"})
    assert response.status_code == 422


def test_manifest_json_is_valid_for_empty_cohort(gateway: Gateway) -> None:
    h = gateway.auth(gateway.researcher)
    manifest = json.loads(
        gateway.client.post("/research/cohorts", headers=h, json={"modality": ["CT"]}).content
    )
    assert manifest["count"] == 0 and manifest["instances"] == []


def test_research_page_pages_through_studies(gateway: Gateway) -> None:
    import re
    from datetime import date

    import psycopg

    from adapters.db import catalog

    with psycopg.connect(gateway.dsn, autocommit=True) as conn:
        for i in range(60):
            catalog.upsert_instance(
                conn,
                catalog.CatalogEntry(
                    sop_instance_uid=f"2.25.9{i}.1.1",
                    series_instance_uid=f"2.25.9{i}.1",
                    study_instance_uid=f"2.25.9{i}",
                    pseudonym="TMI-00000000PG",
                    bucket_key=f"pg/{i}.dcm",
                    size_bytes=1,
                    sha256="0" * 64,
                    modality="CR",
                    study_date=date(2023, 1, 1 + i % 28),
                ),
            )
    gateway.client.post("/login", data={"token": gateway.researcher})
    first = gateway.client.get("/ui/research", params={"modality": "CR", "sort": "study_date"})
    assert first.status_code == 200 and first.text.count("TMI-00000000PG") == 50
    (next_url,) = re.findall(r'href="([^"]+)" id="next-page"', first.text)
    second = gateway.client.get(next_url.replace("&amp;", "&"))
    assert second.text.count("TMI-00000000PG") == 10 and 'id="next-page"' not in second.text
    assert 'id="count-studies">60<' in second.text
