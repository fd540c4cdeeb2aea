"""Every /admin route leaves an audit row naming the caller and the request — checked route by route, and
the list of routes checked must cover every /admin route the app serves (a new route fails this test
until it is added here, with its audit expectation)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app, route_table
from tests.integration.gateway.conftest import Gateway

pytestmark = pytest.mark.integration


def _calls(g: Gateway, h: dict[str, str]) -> list[tuple[str, str, Any]]:
    """One valid call per admin route, in an order where each one's target exists."""
    p0, p1, p2 = (p.person_id for p in g.persons)
    flag = g.client.get("/admin/flags", headers=h).json()[0]
    identity = flag["identity_id"]
    note = g.client.post(f"/admin/persons/{p1}/notes", headers=h, json={"body": "seed"}).json()["id"]
    created = g.client.post("/admin/tokens", headers=h, json={"name": "tmp", "role": "researcher"})
    token_id = created.json()["id"]
    return [
        ("POST", "/admin/persons/search", {"name": "roe"}),
        ("GET", f"/admin/persons/by-pseudonym/{g.persons[1].pseudonym}", None),
        ("GET", f"/admin/persons/{p1}", None),
        ("POST", f"/admin/persons/{p1}/notes", {"body": "another"}),
        ("GET", f"/admin/notes/{note}", None),
        ("PUT", f"/admin/notes/{note}", {"body": "edited"}),
        ("GET", f"/admin/identities/{identity}", None),
        ("GET", "/admin/flags", None),
        ("GET", f"/admin/flags/{flag['id']}", None),
        ("POST", f"/admin/flags/{flag['id']}/resolve", {"resolution": "typo, checked with the clinic"}),
        ("POST", f"/admin/identities/{identity}/confirm", {"reason": "checked"}),
        ("POST", f"/admin/identities/{identity}/corrections", {"changes": {"sex": "F"}, "reason": "form"}),
        ("POST", "/admin/persons/merge", {"keep_person_id": p0, "merge_person_ids": [p2], "reason": "same"}),
        ("POST", f"/admin/persons/{p0}/split", {"identity_ids": [g.persons[2].identity_id], "reason": "not"}),
        ("GET", "/admin/audit", None),
        ("GET", "/admin/tokens", None),
        ("POST", "/admin/tokens", {"name": "another", "role": "service"}),
        ("DELETE", f"/admin/tokens/{token_id}", None),
    ]


def test_every_admin_route_is_audited(gateway: Gateway) -> None:
    h = gateway.auth(gateway.admin)
    calls = _calls(gateway, h)
    templates = {(m, p) for m, p in route_table(create_app()) if p.startswith("/admin/")}
    covered = set()
    for method, path, _ in calls:
        for m, template in templates:
            parts, wanted = template.split("/"), path.split("/")
            if (
                m == method
                and len(parts) == len(wanted)
                and all(a == b or a.startswith("{") for a, b in zip(parts, wanted, strict=True))
            ):
                covered.add((m, template))
    assert covered == templates, templates - covered
    for n, (method, path, body) in enumerate(calls):
        request_id = f"audit-check-{n:04d}"
        before = len(gateway.audit_rows())
        response = gateway.client.request(method, path, headers={**h, "X-Request-ID": request_id}, json=body)
        rows = gateway.audit_rows()[before:]
        assert response.status_code < 300, (method, path, response.text)
        assert rows, (method, path)
        assert all(r["actor"].startswith("token:") and r["role"] == "admin" for r in rows), (method, path)
        assert any(r["request_id"] == request_id for r in rows), (method, path, rows)
