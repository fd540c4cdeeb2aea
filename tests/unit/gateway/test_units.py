"""Unit tests of the gateway's pure parts: research schemas, cursors, OIDC validation, download helpers."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.cli.download import ManifestError, load_manifest, safe_destination, url_expires_at
from adapters.db.catalog import CatalogEntry, CatalogError, StudyFilters, decode_cursor, encode_cursor
from gateway import schemas
from gateway.deps import OidcValidator
from tmi.settings import Settings

RESEARCH_FIELDS = {
    "pseudonym",
    "sex",
    "ethnic_group",
    "modality",
    "body_part",
    "view_position",
    "laterality",
    "manufacturer",
    "model",
    "age_min",
    "age_max",
    "study_date_from",
    "study_date_to",
    "study_instance_uids",
    "format",
    "study_instance_uid",
    "age_years",
    "study_date",
    "modalities",
    "body_parts",
    "view_positions",
    "lateralities",
    "manufacturers",
    "models",
    "series_count",
    "instance_count",
    "total_bytes",
    "items",
    "next_cursor",
    "sort",
    "studies",
    "instances",
    "key",
    "size",
    "sha256",
    "url",
    "series_instance_uid",
    "sop_instance_uid",
    "manifest_version",
    "manifest_id",
    "created_at",
    "expires_at",
    "api_url",
    "bucket",
    "filters",
    "count",
    "keys",
    "urls",
    "unknown",
}


def test_research_models_hold_only_allow_listed_fields() -> None:
    research = [
        schemas.CohortFilters,
        schemas.CohortRequest,
        schemas.StudyOut,
        schemas.StudyPageOut,
        schemas.CohortCountsOut,
        schemas.ManifestInstance,
        schemas.ManifestHeader,
        schemas.PresignRequest,
        schemas.PresignOut,
        schemas.FacetsOut,
    ]
    for model in research:
        assert set(model.model_fields) <= RESEARCH_FIELDS, (
            model.__name__,
            set(model.model_fields) - RESEARCH_FIELDS,
        )
        assert model.model_config.get("extra") == "forbid"
    assert set(CatalogEntry.__dataclass_fields__) - RESEARCH_FIELDS <= {
        "bucket_key",
        "size_bytes",
        "sop_class_uid",
        "rows",
        "columns",
        "number_of_frames",
        "transfer_syntax",
    }


def test_cohort_filters_convert_and_drop_blank_values() -> None:
    filters = schemas.CohortRequest(modality=["MG", ""], age_min=40, format="csv").to_filters()
    assert filters == StudyFilters(modality=("MG",), age_min=40)
    assert filters.as_dict() == {"modality": ["MG"], "age_min": 40}


def test_cursor_round_trip_and_rejections() -> None:
    cursor = encode_cursor("-study_date", date(2024, 5, 1), "2.25.9")
    assert decode_cursor(cursor, "-study_date") == (date(2024, 5, 1), "2.25.9")
    assert decode_cursor(encode_cursor("age_years", 41, "x"), "age_years") == (41, "x")
    for bad, sort in (
        (cursor, "pseudonym"),
        ("!!!", "pseudonym"),
        (encode_cursor("age_years", "41", "x"), "age_years"),
    ):
        with pytest.raises(CatalogError):
            decode_cursor(bad, sort)


def test_catalog_entry_from_deid_catalog_mapping() -> None:
    entry = CatalogEntry.from_catalog(
        {
            "pseudonym": "TMI-0123456789",
            "sex": "F",
            "age_years": "052",
            "study_date": "20240115",
            "modality": "MG",
            "laterality": "",
            "rows": 4096,
            "unknown_key": "ignored",
        },
        study_instance_uid="2.25.1",
        series_instance_uid="2.25.2",
        sop_instance_uid="2.25.3",
        bucket_key="TMI-0123456789/2.25.1/2.25.2/2.25.3.dcm",
        size_bytes=10,
        sha256="A" * 64,
    )
    assert entry.age_years == 52 and entry.study_date == date(2024, 1, 15) and entry.laterality is None
    assert entry.sha256 == "a" * 64 and entry.rows == 4096


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[object, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, public


def _token(key: object, **claims: object) -> str:
    payload = {
        "sub": "alice",
        "exp": int(time.time()) + 300,
        "iss": "https://idp.example",
        "aud": "tmi",
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS256")  # type: ignore[arg-type]


def test_oidc_bearer_validation(rsa_pair: tuple[object, str]) -> None:
    key, public = rsa_pair
    settings = Settings(
        gateway_oidc_public_key=public, gateway_oidc_issuer="https://idp.example", gateway_oidc_audience="tmi"
    )
    validator = OidcValidator(settings)
    admin = validator.validate(_token(key, tmi_role=["researcher", "admin"]))
    assert admin is not None and (admin.actor, admin.role, admin.via) == ("oidc:alice", "admin", "oidc")
    researcher = validator.validate(_token(key, tmi_role="researcher"))
    assert researcher is not None and researcher.role == "researcher"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in (
        _token(key, tmi_role="admin", exp=int(time.time()) - 10),  # expired
        _token(key, tmi_role="admin", aud="someone-else"),  # wrong audience
        _token(key, tmi_role="admin", iss="https://evil.example"),  # wrong issuer
        _token(key),  # no role
        _token(other_key, tmi_role="admin"),  # wrong signature
        jwt.encode(
            {"sub": "x", "exp": int(time.time()) + 60, "tmi_role": "admin"}, "s" * 64, algorithm="HS256"
        ),
    ):
        assert validator.validate(bad) is None


def test_download_helpers(tmp_path: Path) -> None:
    assert safe_destination(tmp_path, "a/b/c.dcm") == tmp_path / "a" / "b" / "c.dcm"
    assert safe_destination(tmp_path, "a//b") == tmp_path / "a" / "b"  # POSIX-normalized, stays inside
    for bad in ("../x", "/etc/passwd", "a/../../x", "a\\b", ""):
        with pytest.raises(ManifestError):
            safe_destination(tmp_path, bad)
    url = "http://h/b/k?X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-Signature=x"
    assert url_expires_at(url) == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert url_expires_at("http://h/b/k") is None
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("key,size,sha256,url\nk1,3," + "a" * 64 + ",http://h/k1\n")
    items, api = load_manifest(csv_path)
    assert api is None and items[0].key == "k1" and items[0].size == 3
    json_path = tmp_path / "m.json"
    json_path.write_text('{"api_url": "http://gw", "instances": [{"key": "k"}]}')
    with pytest.raises(ManifestError):
        load_manifest(json_path)


def test_orthanc_ids_match_orthancs_hashing() -> None:
    from gateway.orthanc_links import orthanc_id, study_links

    # Orthanc book, "Orthanc identifiers": SHA-1 of "PatientID|StudyInstanceUID", as 5 dash-separated groups
    digest = hashlib.sha1(b"TMI-0123456789|2.25.1", usedforsecurity=False).hexdigest()
    assert orthanc_id("TMI-0123456789", "2.25.1") == "-".join(digest[i : i + 8] for i in range(0, 40, 8))
    assert re.fullmatch(r"([0-9a-f]{8}-){4}[0-9a-f]{8}", orthanc_id("x"))
    links = study_links([SimpleNamespace(id=7, anon_study_uid="2.25.1")], "TMI-0123456789", Settings())
    assert links[0].intake == "/ui/admin/orthanc/intake/studies/7"
    assert links[0].research.startswith("http://127.0.0.1:8043/app/explorer.html#study?uuid=")


def test_database_down_answers_503_not_500() -> None:
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.services import Services

    settings = Settings()
    services = Services(settings, dsn="postgresql://postgres@127.0.0.1:9/none", pool_timeout=0.5)
    with TestClient(create_app(settings, services)) as client:
        response = client.get("/research/studies", headers={"Authorization": "Bearer tmi_x"})
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert client.get("/healthz").json() == {"status": "ok"}


def test_hand_built_manifest_rows_equal_the_library_encoders() -> None:
    import csv
    import io
    import json

    from gateway.manifest import CSV_COLUMNS, _csv_line, _csv_row, _json_row

    url = "http://s3.local/b/k?X-Amz-Credential=a%2Fb&X-Amz-Signature=00ff"
    rows = [
        (
            "TMI-1/2.25.1/2.25.2/2.25.3.dcm",
            12,
            "f" * 64,
            "TMI-1",
            "2.25.1",
            "2.25.2",
            "2.25.3",
            "MG",
            None,
            "L",
        ),
        ('odd,"key"\nü.dcm', 0, "0" * 64, "TMI-2", "1", "2", "3", None, None, None),
    ]
    for row in rows:
        parsed = json.loads(_json_row(row, url))
        assert parsed == dict(zip(CSV_COLUMNS, _csv_row(row, url), strict=True))
        reference = io.StringIO()
        csv.writer(reference, lineterminator="\n").writerow(_csv_row(row, url))
        line = _csv_line(row, url)
        assert line is None or line == reference.getvalue()
    assert _csv_line(rows[0], url) is not None and _csv_line(rows[1], url) is None
