"""/events/s3 hands MinIO webhook records to the pipeline handler; mangum serves API Gateway v2 events."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.gateway.conftest import Gateway

pytestmark = pytest.mark.integration


def _minio_event(*keys: str) -> dict[str, Any]:
    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"tmi-intake/{keys[0]}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": "tmi-intake"}, "object": {"key": key, "size": 10, "eTag": "abc"}},
            }
            for key in keys
        ],
    }


def test_events_forwarded_to_handler_with_request_id(gateway: Gateway) -> None:
    event = _minio_event("incoming/2026/11/21/a.dcm", "incoming/2026/11/21/b.dcm")
    response = gateway.client.post(
        "/events/s3", headers={**gateway.auth(gateway.service), "X-Request-ID": "req-12345678"}, json=event
    )
    assert response.status_code == 200
    assert [p["key"] for p in response.json()["processed"]] == [
        "incoming/2026/11/21/a.dcm",
        "incoming/2026/11/21/b.dcm",
    ]
    assert gateway.events == [(event, "req-12345678")]
    assert response.headers["x-request-id"] == "req-12345678"


def test_failed_objects_answer_503_so_minio_retries(gateway: Gateway) -> None:
    response = gateway.client.post(
        "/events/s3",
        headers=gateway.auth(gateway.admin),
        json=_minio_event("incoming/ok.dcm", "incoming/fail.dcm"),
    )
    assert response.status_code == 503
    assert response.json()["failed"] == ["incoming/fail.dcm"]


def test_malformed_bodies_are_400(gateway: Gateway) -> None:
    h = gateway.auth(gateway.service)
    assert gateway.client.post("/events/s3", headers=h, content=b"not json").status_code == 400
    assert gateway.client.post("/events/s3", headers=h, json={"hello": 1}).status_code == 400
    assert gateway.events == []


def test_default_handler_is_the_pipelines(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the app's default wiring, a saved MinIO webhook event reaches the pipeline's
    ``handle_s3_document`` (its parser URL-decodes the key) and then the intake service."""
    import functions.intake_handler as intake
    from gateway.app import create_app
    from gateway.services import Services

    processed: list[tuple[str, str, str]] = []

    class FakeIntakeService:
        def process(self, obj: Any, request_id: str = "") -> Any:
            processed.append((obj.bucket, obj.key, request_id))
            return type(
                "Result", (), {"outcome": "published", "pseudonym": "TMI-0000000000", "reason": None}
            )()

    monkeypatch.setattr(intake, "_default_service", lambda: FakeIntakeService())
    app = create_app(services=Services(gateway.client.app.state.services.settings, dsn=gateway.dsn))
    from fastapi.testclient import TestClient

    event = json.loads((Path(__file__).parents[2] / "events" / "minio_webhook_put.json").read_text())
    with TestClient(app) as client:
        response = client.post(
            "/events/s3",
            headers={**gateway.auth(gateway.service), "X-Request-ID": "minio-00000001"},
            json=event,
        )
        assert response.status_code == 200, response.text
        assert processed == [("tmi-intake", "incoming/2026/11/21/a b+c.dcm", "minio-00000001")]
        malformed = client.post(
            "/events/s3", headers=gateway.auth(gateway.service), json={"Records": [{"s3": {}}]}
        )
        assert malformed.status_code == 400


def _apigw_v2(
    method: str, path: str, token: str, body: dict[str, Any] | None = None, query: str = ""
) -> dict[str, Any]:
    raw = json.dumps(body).encode() if body is not None else b""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "authorization": f"Bearer {token}",
            "content-type": "application/json",
            "host": "abc123.execute-api.eu-west-1.amazonaws.com",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "requestId": "r-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "21/Nov/2026:22:00:00 +0000",
            "timeEpoch": 1795000000000,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "pytest",
            },
        },
        "body": base64.b64encode(raw).decode() if raw else "",
        "isBase64Encoded": bool(raw),
    }


class _Context:
    aws_request_id = "lambda-req-1"
    function_name = "tmi-gateway"


def test_mangum_handler_serves_api_gateway_v2_events(gateway: Gateway) -> None:
    """The module's handler is ``Mangum(gateway.app.app, lifespan="off")``; the same adapter around the
    test app (real database and S3) answers API Gateway v2 events."""
    from mangum import Mangum

    import gateway.app as app_module
    import gateway.lambda_handler as lambda_module

    assert lambda_module.handler.app is app_module.app and lambda_module.handler.lifespan == "off"
    handler = Mangum(gateway.client.app, lifespan="off")
    studies = handler(
        _apigw_v2("GET", "/research/studies", gateway.researcher, query="sort=pseudonym&limit=2"), _Context()
    )
    assert studies["statusCode"] == 200, studies
    page = json.loads(studies["body"])
    assert len(page["items"]) == 2 and page["next_cursor"]
    manifest = handler(
        _apigw_v2("POST", "/research/cohorts", gateway.researcher, {"laterality": ["R"]}), _Context()
    )
    assert manifest["statusCode"] == 200
    body = (
        manifest["body"]
        if not manifest.get("isBase64Encoded")
        else base64.b64decode(manifest["body"]).decode()
    )
    assert json.loads(body)["count"] == 6
    denied = handler(_apigw_v2("GET", "/admin/flags", gateway.researcher), _Context())
    assert denied["statusCode"] == 403


def test_lambda_handler_opens_services_lazily() -> None:
    """Without a lifespan the pool opens on first use (nothing connects at import time)."""
    from gateway.app import create_app

    services = create_app().state.services
    assert services._pool is None and services._crosswalk is None
