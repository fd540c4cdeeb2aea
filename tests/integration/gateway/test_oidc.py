"""Optional OIDC bearer validation end to end: a JWKS served over HTTP, RS256 tokens with a role claim,
the app's role rules and the audit actor ``oidc:<sub>``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.gateway.conftest import Gateway

pytestmark = pytest.mark.integration


@pytest.fixture
def jwks() -> Iterator[tuple[Any, str]]:
    """An RSA key and the URL of a JWKS document publishing its public half (kid ``k1``)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield key, f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


def _token(key: Any, role: Any, **extra: Any) -> str:
    claims = {
        "sub": "alice",
        "iss": "https://idp.example",
        "aud": "tmi",
        "exp": int(time.time()) + 300,
        "tmi_role": role,
        **extra,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def test_oidc_tokens_follow_the_role_rules(gateway: Gateway, jwks: tuple[Any, str]) -> None:
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.services import Services
    from tmi.settings import Settings

    key, url = jwks
    settings = Settings(
        database_url=gateway.dsn,
        gateway_oidc_jwks_url=url,
        gateway_oidc_issuer="https://idp.example",
        gateway_oidc_audience="tmi",
    )
    with TestClient(create_app(settings, Services(settings, dsn=gateway.dsn))) as client:
        researcher = {"Authorization": f"Bearer {_token(key, 'researcher')}"}
        admin = {"Authorization": f"Bearer {_token(key, ['researcher', 'admin'])}"}
        assert client.get("/research/studies", headers=researcher).status_code == 200
        assert client.get("/admin/flags", headers=researcher).status_code == 403
        assert client.get("/admin/flags", headers=admin).status_code == 200
        expired = {"Authorization": f"Bearer {_token(key, 'admin', exp=int(time.time()) - 5)}"}
        assert client.get("/admin/flags", headers=expired).status_code == 401
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = {"Authorization": f"Bearer {_token(stranger, 'admin')}"}
        assert client.get("/admin/flags", headers=forged).status_code == 401
        # API tokens keep working beside OIDC
        assert client.get("/research/facets", headers=gateway.auth(gateway.researcher)).status_code == 200
    rows = gateway.audit_rows("crosswalk.flags.list")
    assert rows and rows[-1]["actor"] == "oidc:alice" and rows[-1]["role"] == "admin"
