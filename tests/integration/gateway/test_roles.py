"""Role tests: every /admin route and /events refuse researchers (403) and anonymous callers (401).

Routes are enumerated from the app itself, so a route added later is covered without touching this file.
"""

from __future__ import annotations

import re

import pytest

from gateway.app import create_app, route_table
from tests.integration.gateway.conftest import Gateway

pytestmark = pytest.mark.integration

_PARAM = re.compile(r"\{[^}]+\}")
_SAMPLES = {
    "person_id": "00000000-0000-4000-8000-000000000000",
    "pseudonym": "TMI-0000000000",
    "side": "intake",
}


def _concrete(path: str) -> str:
    return _PARAM.sub(lambda m: _SAMPLES.get(m.group(0)[1:-1], "1"), path)


def _routes(prefixes: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(m, p) for m, p in route_table(create_app()) if p.startswith(prefixes)]


def test_route_enumeration_sees_every_router() -> None:
    paths = {p for _, p in route_table(create_app())}
    assert {"/research/studies", "/admin/flags", "/admin/persons/{person_id}", "/events/s3"} <= paths
    assert len(_routes(("/admin/",))) >= 15


def test_researcher_gets_403_on_every_admin_and_events_route(gateway: Gateway) -> None:
    routes = _routes(("/admin/", "/events/"))
    assert routes
    before = gateway.audit_rows()
    for method, path in routes:
        response = gateway.client.request(
            method, _concrete(path), headers=gateway.auth(gateway.researcher), json={}
        )
        assert response.status_code == 403, (method, path, response.status_code)
    assert gateway.audit_rows() == before  # a refused call reads and writes nothing
    assert gateway.events == []


def test_researcher_session_gets_403_on_every_admin_page(gateway: Gateway) -> None:
    login = gateway.client.post("/login", data={"token": gateway.researcher}, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/ui/research"
    pages = _routes(("/ui/admin",))
    assert len(pages) >= 8
    for method, path in pages:
        response = gateway.client.request(
            method, _concrete(path), data={"resolution": "x", "body": "x"}, follow_redirects=False
        )
        assert response.status_code == 403, (method, path, response.status_code)
    assert gateway.client.get("/ui/research").status_code == 200


def test_service_token_only_reaches_events(gateway: Gateway) -> None:
    for method, path in _routes(("/admin/", "/research/")):
        response = gateway.client.request(
            method, _concrete(path), headers=gateway.auth(gateway.service), json={}
        )
        assert response.status_code == 403, (method, path)
    ok = gateway.client.post("/events/s3", headers=gateway.auth(gateway.service), json={"Records": []})
    assert ok.status_code == 200


def test_anonymous_and_bogus_tokens_get_401(gateway: Gateway) -> None:
    for method, path in _routes(("/admin/", "/events/", "/research/")):
        for headers in (
            {},
            {"Authorization": "Bearer tmi_not-a-real-token"},
            {"Authorization": "Basic x"},
            {"Authorization": "Bearer a.b.c"},
        ):
            response = gateway.client.request(method, _concrete(path), headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)


def test_anonymous_pages_redirect_to_login(gateway: Gateway) -> None:
    for method, path in _routes(("/ui/",)):
        response = gateway.client.request(method, _concrete(path), follow_redirects=False, data={})
        assert response.status_code == 303, (method, path)
        assert response.headers["location"].startswith("/login?next=")


def test_admin_may_use_research(gateway: Gateway) -> None:
    response = gateway.client.get("/research/studies", headers=gateway.auth(gateway.admin))
    assert response.status_code == 200 and len(response.json()["items"]) == 3


def test_revoked_token_is_refused(gateway: Gateway) -> None:
    created = gateway.client.post(
        "/admin/tokens",
        headers=gateway.auth(gateway.admin),
        json={"name": "short-lived", "role": "researcher"},
    )
    assert created.status_code == 201
    token, token_id = created.json()["token"], created.json()["id"]
    assert gateway.client.get("/research/facets", headers=gateway.auth(token)).status_code == 200
    listed = gateway.client.get("/admin/tokens", headers=gateway.auth(gateway.admin)).json()
    assert all(t["token"] is None for t in listed) and token not in str(listed)
    assert (
        gateway.client.delete(f"/admin/tokens/{token_id}", headers=gateway.auth(gateway.admin)).status_code
        == 204
    )
    assert gateway.client.get("/research/facets", headers=gateway.auth(token)).status_code == 401
    actions = [r["action"] for r in gateway.audit_rows()]
    assert {"gateway.token.create", "gateway.tokens.list", "gateway.token.revoke"} <= set(actions)
