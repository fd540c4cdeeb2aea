"""Authentication and authorization dependencies of the gateway.

Callers authenticate with ``Authorization: Bearer <token>``:

- a TMI API token (``tmi_…``), looked up by its SHA-256 in PostgreSQL (``adapters.db.tokens``);
- when configured (``TMI_GATEWAY_OIDC_JWKS_URL`` or ``TMI_GATEWAY_OIDC_PUBLIC_KEY``), an OIDC/JWT access
  token validated with PyJWT (signature, ``exp``, issuer and audience when set); its role comes from the
  ``TMI_GATEWAY_OIDC_ROLE_CLAIM`` claim;
- in the browser, the ``tmi_session`` cookie set by the login page (a random session id, stored hashed).

Roles: ``researcher`` (``/research``), ``admin`` (everything), ``service`` (``/events`` only, for the MinIO
webhook). Tokens never reach a log line: only the token id and role are logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters.db import tokens
from gateway.services import Services
from tmi.settings import Settings

logger = logging.getLogger(__name__)

SESSION_COOKIE = "tmi_session"
RESEARCH_ROLES = ("researcher", "admin")
ADMIN_ROLES = ("admin",)
EVENT_ROLES = ("admin", "service")

_bearer = HTTPBearer(auto_error=False, description="A TMI API token (`tmi tokens create`) or an OIDC JWT")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the audit actor string, the role, and how they authenticated."""

    actor: str
    role: str
    via: str  # "token" | "session" | "oidc"
    token_id: int | None = None


class LoginRequired(Exception):
    """A page was requested without a valid session: the app redirects to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def get_services(request: Request) -> Services:
    """The app's :class:`Services` (opened on first use when no lifespan ran, as under Lambda)."""
    services: Services = request.app.state.services
    return services


def get_conn(services: Annotated[Services, Depends(get_services)]) -> Iterator[psycopg.Connection]:
    """A pooled autocommit connection for the duration of the request."""
    with services.pool.connection() as conn:
        yield conn


def request_id(request: Request) -> str:
    """The request id set by the app's middleware (echoed in ``X-Request-ID``)."""
    return str(getattr(request.state, "request_id", ""))


class OidcValidator:
    """Validates OIDC/JWT bearer tokens against a JWKS URL or a PEM public key (PyJWT)."""

    def __init__(self, settings: Settings) -> None:
        import jwt

        self._jwt = jwt
        self._settings = settings
        self._algorithms = [a.strip() for a in settings.gateway_oidc_algorithms.split(",") if a.strip()]
        self._jwks = (
            jwt.PyJWKClient(settings.gateway_oidc_jwks_url) if settings.gateway_oidc_jwks_url else None
        )
        self._key = settings.gateway_oidc_public_key

    def validate(self, token: str) -> Principal | None:
        """Return the principal of a valid token, or ``None`` (bad signature, expired, wrong audience…)."""
        jwt = self._jwt
        try:
            key: Any = self._jwks.get_signing_key_from_jwt(token).key if self._jwks else self._key
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._settings.gateway_oidc_audience,
                issuer=self._settings.gateway_oidc_issuer,
                options={"require": ["exp", "sub"], "verify_aud": bool(self._settings.gateway_oidc_audience)},
            )
        except jwt.PyJWTError as exc:
            logger.info("OIDC bearer token rejected: %s", type(exc).__name__)
            return None
        granted = claims.get(self._settings.gateway_oidc_role_claim)
        roles = {granted} if isinstance(granted, str) else set(granted or [])
        role = "admin" if "admin" in roles else "researcher" if "researcher" in roles else None
        if role is None:
            logger.info("OIDC bearer token without a TMI role claim")
            return None
        return Principal(actor=f"oidc:{claims['sub']}", role=role, via="oidc")


_oidc_lock = threading.Lock()


def _oidc(request: Request, settings: Settings) -> OidcValidator | None:
    if not (settings.gateway_oidc_jwks_url or settings.gateway_oidc_public_key):
        return None
    with _oidc_lock:
        validator = getattr(request.app.state, "oidc", None)
        if validator is None:
            validator = OidcValidator(settings)
            request.app.state.oidc = validator
    return validator


def _from_token_info(info: tokens.TokenInfo, via: str) -> Principal:
    return Principal(actor=f"token:{info.id}:{info.name}", role=info.role, via=via, token_id=info.id)


def _cross_site_write(request: Request) -> bool:
    """True for an unsafe method whose ``Origin`` is another site (CSRF defence besides SameSite=Strict)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return False
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc != request.headers.get("host", "")


def authenticate(request: Request, conn: psycopg.Connection, bearer: str | None) -> Principal | None:
    """Return the principal behind ``bearer`` or the session cookie; ``None`` when nobody is logged in."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    principal: Principal | None = None
    if bearer:
        if bearer.startswith(tokens.TOKEN_PREFIX):
            info = tokens.authenticate(conn, bearer)
            principal = _from_token_info(info, "token") if info else None
        elif bearer.count(".") == 2:
            validator = _oidc(request, request.app.state.services.settings)
            principal = validator.validate(bearer) if validator else None
    else:
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id and _cross_site_write(request):
            logger.warning("cross-site write with a session cookie refused")
            session_id = None
        if session_id:
            info = tokens.authenticate_session(conn, session_id)
            principal = _from_token_info(info, "session") if info else None
    request.state.principal = principal
    return principal


def current_principal(
    request: Request,
    conn: Annotated[psycopg.Connection, Depends(get_conn, scope="function")],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller of an API route; 401 without valid credentials."""
    principal = authenticate(request, conn, credentials.credentials if credentials else None)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid credentials",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def require_roles(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency admitting only callers whose role is in ``roles`` (403 otherwise)."""

    def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in roles:
            logger.info("forbidden: %s role=%s needs one of %s", principal.via, principal.role, roles)
            raise HTTPException(status.HTTP_403_FORBIDDEN, "your role may not use this route")
        return principal

    dependency.__name__ = f"require_{'_or_'.join(roles)}"
    return dependency


require_researcher = require_roles(*RESEARCH_ROLES)
require_admin = require_roles(*ADMIN_ROLES)
require_events = require_roles(*EVENT_ROLES)

Researcher = Annotated[Principal, Depends(require_researcher)]
Admin = Annotated[Principal, Depends(require_admin)]
EventSender = Annotated[Principal, Depends(require_events)]
Conn = Annotated[psycopg.Connection, Depends(get_conn, scope="function")]
ServicesDep = Annotated[Services, Depends(get_services)]
RequestId = Annotated[str, Depends(request_id)]


def page_principal(*roles: str) -> Callable[..., Principal]:
    """Like :func:`require_roles` for pages: no session → redirect to the login page; wrong role → 403."""

    def dependency(request: Request, conn: Conn) -> Principal:
        principal = authenticate(request, conn, None)
        if principal is None:
            raise LoginRequired(request.url.path)
        if principal.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "your role may not use this page")
        return principal

    dependency.__name__ = f"page_{'_or_'.join(roles)}"
    return dependency


ResearchPage = Annotated[Principal, Depends(page_principal(*RESEARCH_ROLES))]
AdminPage = Annotated[Principal, Depends(page_principal(*ADMIN_ROLES))]
