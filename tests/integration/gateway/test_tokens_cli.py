"""``tmi tokens create|list|revoke`` against a real database; the token is printed once and works."""

from __future__ import annotations

import json

import psycopg
import pytest

from adapters.cli import main
from adapters.db import tokens

pytestmark = pytest.mark.integration


def test_create_list_revoke(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tokens", "--database-url", pg_dsn, "create", "--role", "researcher", "--name", "ana"]) == 0
    created = capsys.readouterr()
    token = created.out.strip()
    assert token.startswith("tmi_") and len(token) > 40 and token not in created.err
    assert (
        main(["tokens", "--database-url", pg_dsn, "create", "--role", "admin", "--name", "it", "--json"]) == 0
    )
    admin = json.loads(capsys.readouterr().out)
    assert admin["role"] == "admin" and admin["token"].startswith("tmi_")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        info = tokens.authenticate(conn, token)
        assert info is not None and info.role == "researcher" and info.name == "ana"
        stored = conn.execute("SELECT token_hash FROM gateway_api_token WHERE id = %s", (info.id,)).fetchone()
        assert stored is not None and bytes(stored[0]) == tokens.hash_token(token)
    assert main(["tokens", "--database-url", pg_dsn, "list"]) == 0
    listing = capsys.readouterr().out
    assert (
        "ana" in listing
        and "researcher" in listing
        and token not in listing
        and admin["token"] not in listing
    )
    assert main(["tokens", "--database-url", pg_dsn, "revoke", str(info.id)]) == 0
    assert main(["tokens", "--database-url", pg_dsn, "revoke", str(info.id)]) == 1
    capsys.readouterr()
    assert main(["tokens", "--database-url", pg_dsn, "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["revoked_at"] is not None for r in rows] == [True, False]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert tokens.authenticate(conn, token) is None
