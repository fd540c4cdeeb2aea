"""No research response contains a PHI field or value: a schema check plus a scan of every response for the
PHI that was sent into the crosswalk."""

from __future__ import annotations

import re

import pytest

from gateway.app import create_app
from tests.integration.gateway.conftest import PHI_PEOPLE, Gateway

pytestmark = pytest.mark.integration


def _phi_needles() -> list[str]:
    needles = []
    for name, birth, _sex, pid, issuer in PHI_PEOPLE:
        needles += [pid, issuer, birth, birth[:4] + "-" + birth[4:6] + "-" + birth[6:]]
        needles += [part for part in re.split(r"[\^ ]", name) if len(part) > 2]
    return needles


def test_openapi_research_schemas_have_no_phi_fields() -> None:
    spec = create_app().openapi()
    components = spec["components"]["schemas"]
    phi_words = re.compile(
        r"name|birth|patient_?id|issuer|institution|accession|original|address|phone|"
        r"identit|calling|other_ids|comment|clinic",
        re.I,
    )
    refs: set[str] = set()
    for path, ops in spec["paths"].items():
        if not path.startswith("/research"):
            continue
        for op in ops.values():
            refs |= set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", str(op)))
    assert refs, "research routes declare their models"
    seen: set[str] = set()
    while refs:
        name = refs.pop()
        if name in seen:
            continue
        seen.add(name)
        schema = components[name]
        refs |= set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", str(schema))) - seen
        for field in schema.get("properties", {}):
            assert not phi_words.search(field), f"{name}.{field} looks like PHI"
    assert {"StudyPageOut", "StudyOut", "PresignOut", "CohortRequest"} <= seen


def test_research_responses_never_contain_phi_values(gateway: Gateway) -> None:
    h = gateway.auth(gateway.researcher)
    key = sorted(gateway.objects)[0]
    responses = [
        gateway.client.get("/research/studies", headers=h),
        gateway.client.get("/research/studies", headers=h, params={"sort": "pseudonym", "limit": 1}),
        gateway.client.get("/research/facets", headers=h),
        gateway.client.post("/research/cohorts/count", headers=h, json={}),
        gateway.client.post("/research/cohorts", headers=h, json={}),
        gateway.client.post("/research/cohorts", headers=h, params={"format": "csv"}, json={}),
        gateway.client.post("/research/presign", headers=h, json={"keys": [key]}),
    ]
    login = gateway.client.post("/login", data={"token": gateway.researcher})
    responses += [
        login,
        gateway.client.get("/ui/research"),
        gateway.client.get("/ui/research", params={"laterality": "L", "sort": "age_years"}),
        gateway.client.post("/ui/research/manifest", data={"format": "json"}),
    ]
    needles = _phi_needles()
    for response in responses:
        assert response.status_code == 200, response.request.url
        text = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
        for needle in needles:
            assert needle.casefold() not in text.casefold(), (str(response.request.url), needle)
    # the manifests did carry the research data (so the scan looked at real content)
    assert gateway.persons[0].pseudonym in responses[4].text and key in responses[5].text
