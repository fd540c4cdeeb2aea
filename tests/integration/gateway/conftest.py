"""Fixtures of the gateway's integration tests: a migrated database, tokens, an app on real services.

PostgreSQL is the session's private cluster (``pg_dsn``: a fresh database per test); S3 is the moto server
of ``tests/fixtures/s3.py`` over HTTP. The app runs in-process through ``TestClient`` (its lifespan opens the
real pool); the browser tests serve it with uvicorn instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
import pytest

from adapters.db import catalog, tokens
from adapters.db.migrate import migrate

PHI_PEOPLE = (
    # name, birth date, sex, patient id, issuer
    ("Doe^Jane^Quincy", "19700412", "F", "PID-77001", "CLINIC-NORTH"),
    ("Roe^Richarda", "19651130", "F", "PID-88002", "CLINIC-SOUTH"),
    ("Moe^Mary", "19800101", "F", "PID-99003", "CLINIC-NORTH"),
)


def apply_schema(dsn: str) -> None:
    """Apply every migration of the project (crosswalk, gateway, pipeline) to ``dsn``."""
    migrate(dsn)


@pytest.fixture
def gateway_dsn(pg_dsn: str) -> Iterator[str]:
    """A fresh database with every migration applied."""
    apply_schema(pg_dsn)
    yield pg_dsn


@dataclass
class Gateway:
    """A running gateway under test: its client, tokens, database and what was seeded."""

    client: Any
    dsn: str
    s3: Any
    bucket: str
    researcher: str
    admin: str
    service: str
    events: list[tuple[Mapping[str, Any], str]] = field(default_factory=list)
    objects: dict[str, bytes] = field(default_factory=dict)
    persons: list[Any] = field(default_factory=list)

    def auth(self, token: str) -> dict[str, str]:
        """Authorization header for ``token``."""
        return {"Authorization": f"Bearer {token}"}

    def audit_rows(self, action: str | None = None) -> list[dict[str, Any]]:
        """Audit rows (optionally of one action), oldest first."""
        from psycopg.rows import dict_row

        with psycopg.connect(self.dsn, row_factory=dict_row) as conn:
            if action:
                return conn.execute(
                    "SELECT * FROM audit_log WHERE action = %s ORDER BY id", (action,)
                ).fetchall()
            return conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()


def make_tokens(dsn: str) -> dict[str, str]:
    """Create one token per role; return ``{role: token}``."""
    out = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for role in ("researcher", "admin", "service"):
            _, token = tokens.create_token(conn, name=f"test-{role}", role=role)
            out[role] = token
    return out


def seed_catalog(
    dsn: str, s3: Any, bucket: str, pseudonyms: list[str], per_study: int = 4
) -> dict[str, bytes]:
    """Publish ``per_study`` small objects per pseudonym (one MG study each) to S3 and the catalog."""
    objects: dict[str, bytes] = {}
    views = [("CC", "L"), ("MLO", "L"), ("CC", "R"), ("MLO", "R")]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n, pseudonym in enumerate(pseudonyms):
            study = f"2.25.{1000 + n}"
            series = f"{study}.1"
            for i in range(per_study):
                sop = f"{series}.{i}"
                key = f"{pseudonym}/{study}/{series}/{sop}.dcm"
                body = f"DICM research object {key}".encode() * (50 + i)
                s3.put_object(Bucket=bucket, Key=key, Body=body)
                objects[key] = body
                view, lat = views[i % 4]
                catalog.upsert_instance(
                    conn,
                    catalog.CatalogEntry(
                        sop_instance_uid=sop,
                        series_instance_uid=series,
                        study_instance_uid=study,
                        pseudonym=pseudonym,
                        bucket_key=key,
                        size_bytes=len(body),
                        sha256=hashlib.sha256(body).hexdigest(),
                        sex="F",
                        age_years=40 + 5 * n,
                        ethnic_group="2186-5" if n % 2 else "2106-3",
                        modality="MG",
                        body_part="BREAST",
                        view_position=view,
                        laterality=lat,
                        study_date=date(2024, 1 + n, 15),
                        manufacturer="ACME",
                        model="Mammo 3000",
                    ),
                )
    return objects


def seed_crosswalk(dsn: str) -> list[Any]:
    """Resolve PHI for the test people, plus a typo of the first one (raises a review flag)."""
    from adapters.db.crosswalk import CrosswalkService
    from tmi.ports import PatientPHI

    resolutions = []
    with CrosswalkService.connect(dsn) as service:
        for name, birth, sex, pid, issuer in PHI_PEOPLE:
            resolutions.append(
                service.resolve(
                    PatientPHI(patient_id=pid, issuer=issuer, name=name, birth_date=birth, sex=sex),
                    source="test",
                )
            )
        typo = PHI_PEOPLE[0]
        service.resolve(
            PatientPHI(
                patient_id=typo[3], issuer=typo[4], name="Doe^Jnae^Quincy", birth_date=typo[1], sex=typo[2]
            ),
            source="test",
        )
        for n, res in enumerate(resolutions):  # one study each, matching seed_catalog's research UIDs
            study = f"2.25.{1000 + n}"
            for i in range(4):
                service.record_instance(
                    person_id=res.person_id,
                    identity_id=res.identity_id,
                    original_study_uid=f"1.2.840.99.{n}",
                    anon_study_uid=study,
                    original_series_uid=f"1.2.840.99.{n}.1",
                    anon_series_uid=f"{study}.1",
                    original_sop_uid=f"1.2.840.99.{n}.1.{i}",
                    anon_sop_uid=f"{study}.1.{i}",
                    accession=f"ACC{n}",
                    study_date=f"2024{1 + n:02d}15",
                    modality="MG",
                    research_key=f"{res.pseudonym}/{study}/{study}.1/{study}.1.{i}.dcm",
                    state="published",
                )
    return resolutions


@pytest.fixture
def gateway(
    gateway_dsn: str,
    moto_endpoint: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gateway]:
    """The gateway app on a fresh database and the moto S3 endpoint, seeded with crosswalk persons (PHI),
    their research catalog entries and objects, and one token per role."""
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.services import Services
    from tmi.settings import Settings

    monkeypatch.setenv("TMI_DATABASE_URL", gateway_dsn)
    monkeypatch.setenv("TMI_GATEWAY_PUBLIC_URL", "http://testserver")
    settings = Settings()
    s3_client.create_bucket(Bucket=settings.research_bucket)
    events: list[tuple[Mapping[str, Any], str]] = []

    def fake_handler(document: Mapping[str, Any], request_id: str) -> Mapping[str, Any]:
        events.append((document, request_id))
        keys = [r["s3"]["object"]["key"] for r in document["Records"]]
        failed = [k for k in keys if "fail" in k]
        return {
            "processed": [{"key": k, "outcome": "published"} for k in keys if k not in failed],
            "failed": failed,
        }

    persons = seed_crosswalk(gateway_dsn)
    objects = seed_catalog(gateway_dsn, s3_client, settings.research_bucket, [p.pseudonym for p in persons])
    services = Services(settings, dsn=gateway_dsn, event_handler=fake_handler)
    app = create_app(settings, services)
    toks = make_tokens(gateway_dsn)
    with TestClient(app) as client:
        yield Gateway(
            client=client,
            dsn=gateway_dsn,
            s3=s3_client,
            bucket=settings.research_bucket,
            researcher=toks["researcher"],
            admin=toks["admin"],
            service=toks["service"],
            events=events,
            objects=objects,
            persons=persons,
        )


@dataclass
class LiveGateway:
    """The same gateway served over real HTTP by uvicorn on 127.0.0.1 and a free port."""

    gateway: Gateway
    url: str


@pytest.fixture
def live_gateway(gateway: Gateway) -> Iterator[LiveGateway]:
    """Serve the test app with uvicorn in a thread (for ``tmi download`` and the browser)."""
    import threading
    import time

    import uvicorn

    from tests.conftest import free_port

    port = free_port()
    config = uvicorn.Config(
        gateway.client.app, host="127.0.0.1", port=port, lifespan="off", log_level="info", access_log=True
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield LiveGateway(gateway=gateway, url=f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
