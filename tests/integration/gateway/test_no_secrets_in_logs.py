"""Tokens and PHI never appear in logs: a whole session (login, research, admin PHI reads and writes, failed
logins, CLI token commands, uvicorn access logs) is run with every logger at DEBUG and the output scanned."""

from __future__ import annotations

import logging

import pytest
import requests

from adapters.cli import main
from tests.integration.gateway.conftest import PHI_PEOPLE, LiveGateway

pytestmark = pytest.mark.integration


def test_tokens_and_phi_never_logged(
    live_gateway: LiveGateway, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    g = live_gateway.gateway
    url = live_gateway.url
    caplog.set_level(logging.DEBUG)
    admin = {"Authorization": f"Bearer {g.admin}"}
    researcher = {"Authorization": f"Bearer {g.researcher}"}
    name, birth, _sex, pid, issuer = PHI_PEOPLE[0]
    with requests.Session() as browser:
        assert browser.post(f"{url}/login", data={"token": g.admin}).status_code == 200
        assert (
            browser.post(f"{url}/login", data={"token": g.admin + "x"}).status_code == 200
        )  # refused, re-shown
        hits = browser.post(f"{url}/ui/admin/search", data={"name": "Doe Jane", "birth_date": birth})
        assert "Doe^Jane" in hits.text
        person_id = g.persons[0].person_id
        assert browser.get(f"{url}/ui/admin/persons/{person_id}").status_code == 200
        assert (
            browser.post(
                f"{url}/ui/admin/persons/{person_id}/notes",
                data={"body": f"patient {name} called, born {birth}"},
            ).status_code
            == 200
        )
        assert browser.get(f"{url}/ui/admin").status_code == 200
    assert (
        requests.post(
            f"{url}/admin/persons/search",
            headers=admin,
            json={"patient_id": pid, "clinic": issuer},
            timeout=10,
        ).status_code
        == 200
    )
    assert requests.get(f"{url}/research/studies", headers=researcher, timeout=10).status_code == 200
    assert (
        requests.post(f"{url}/research/cohorts", headers=researcher, json={}, timeout=10).status_code == 200
    )
    assert requests.get(f"{url}/admin/flags", headers=researcher, timeout=10).status_code == 403
    assert (
        requests.get(
            f"{url}/research/studies", headers={"Authorization": "Bearer tmi_wrong"}, timeout=10
        ).status_code
        == 401
    )
    assert main(["tokens", "--database-url", g.dsn, "list"]) == 0
    cli = capsys.readouterr()
    assert g.admin not in cli.out + cli.err and g.researcher not in cli.out + cli.err
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "uvicorn.access" in {r.name for r in caplog.records}, "access logs were captured"
    assert "/ui/admin/persons/" in logged
    for secret in (g.admin, g.researcher, g.service, g.admin[4:20]):
        assert secret not in logged
    for value in ("Doe", "Jane", birth, pid, issuer, "called, born"):
        assert value not in logged, value
