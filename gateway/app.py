"""The TMI gateway: builds the FastAPI app and includes the routers (FastAPI "bigger applications").

- ``/research`` (researcher or admin): study search, cohort manifests, re-presigning;
- ``/admin`` (admin): the PHI console's API over the crosswalk service;
- ``/events/s3`` (admin or service): MinIO webhook target feeding the pipeline's handler;
- server-rendered pages (``/``, ``/login``, ``/ui/...``) for both roles.

``create_app()`` builds an app; the module-level ``app`` is what uvicorn serves
(``uvicorn gateway.app:app``) and what ``gateway.lambda_handler`` wraps. The lifespan opens the PostgreSQL
pool (``open=False`` then ``open()``); without a lifespan (Lambda) it opens on first use.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from psycopg_pool import PoolTimeout

from gateway.deps import LoginRequired
from gateway.routers import admin, events, pages, research
from gateway.services import Services
from tmi.crosswalk.model import InvalidChangeError, UnknownRecordError
from tmi.errors import RetryableError
from tmi.settings import Settings, get_settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Give every request an id (a sane incoming ``X-Request-ID`` or a new UUID) and echo it back."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _REQUEST_ID.match(incoming) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", rid.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the gateway app. ``services`` defaults to one built from ``settings`` (nothing connects yet)."""
    settings = settings or get_settings()
    services = services or Services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.open()
        try:
            yield
        finally:
            services.close()

    app = FastAPI(
        title="TMI gateway",
        version="1",
        description="Research cohorts with presigned bulk download; the IT staff's PHI console; S3 events.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.add_middleware(RequestIdMiddleware)
    app.include_router(research.router)
    app.include_router(admin.router)
    app.include_router(events.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(UnknownRecordError)
    async def unknown_record(request: Request, exc: UnknownRecordError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(InvalidChangeError)
    async def invalid_change(request: Request, exc: InvalidChangeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            {"detail": "the database is unavailable; retry later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(RetryableError)
    async def retryable(request: Request, exc: RetryableError) -> JSONResponse:
        logger.warning("dependency unavailable: %s", type(exc).__name__)
        return JSONResponse(
            {"detail": "a dependency is unavailable; retry later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.get("/healthz", tags=["health"], include_in_schema=True)
    def healthz() -> dict[str, str]:
        """Liveness: the process answers (no dependency is touched)."""
        return {"status": "ok"}

    return app


app = create_app()


def route_table(application: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, flattened across included routers (for docs and tests)."""
    table: list[tuple[str, str]] = []

    def visit(route: Any, prefix: str = "") -> None:
        if hasattr(route, "effective_route_contexts"):  # FastAPI ≥ 0.16x keeps included routers as nodes
            for context in route.effective_route_contexts():
                visit_leaf(context.original_route, context.path)
        else:
            visit_leaf(route, getattr(route, "path", ""))

    def visit_leaf(route: Any, path: str) -> None:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                table.append((method, path))

    for route in application.routes:
        visit(route)
    return table
