"""Server-rendered pages (Jinja2): login, the research cohort builder, and the admin console.

Pages authenticate with the ``tmi_session`` cookie (HttpOnly, SameSite=Strict) created by pasting an API
token on the login page; cross-site form posts are refused (see :mod:`gateway.deps`). Pages call the same
catalog and crosswalk functions as the JSON API, so audit rows are identical. PHI is only ever sent in
form bodies, never in URLs.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from adapters.db import catalog, tokens
from gateway import audit
from gateway.deps import (
    SESSION_COOKIE,
    AdminPage,
    Conn,
    Principal,
    RequestId,
    ResearchPage,
    ServicesDep,
    authenticate,
)
from gateway.manifest import chained, open_manifest
from gateway.orthanc_links import explorer_study_url, intake_base, research_base, study_links
from gateway.routers.admin import actor_of
from gateway.routers.research import api_base_url
from gateway.schemas import CohortFilters

logger = logging.getLogger(__name__)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))
router = APIRouter(tags=["pages"], include_in_schema=False)

_LIST_FIELDS = (
    "pseudonym",
    "sex",
    "ethnic_group",
    "modality",
    "body_part",
    "view_position",
    "laterality",
    "manufacturer",
    "model",
)


def _render(request: Request, name: str, principal: Principal | None, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, name, {"principal": principal, **context})


def _home_for(principal: Principal) -> str:
    return "/ui/admin" if principal.role == "admin" else "/ui/research"


def _safe_next(next_path: str | None) -> str | None:
    """Only local absolute paths are followed after login (no open redirect)."""
    if next_path and next_path.startswith("/") and not next_path.startswith("//") and "\\" not in next_path:
        return next_path
    return None


@router.get("/", response_class=HTMLResponse)
def index(request: Request, conn: Conn) -> Response:
    """Send the visitor to their console, or to the login page."""
    principal = authenticate(request, conn, None)
    return RedirectResponse(_home_for(principal) if principal else "/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    """The login page: paste an API token."""
    return _render(request, "login.html", None, next=_safe_next(next) or "", error=None)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    conn: Conn,
    services: ServicesDep,
    request_id: RequestId,
    token: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Check the token, open a browser session and redirect; the token itself is not kept in the browser."""
    info = tokens.authenticate(conn, token.strip())
    if info is None or info.role not in ("researcher", "admin"):
        logger.info("login refused")
        return _render(
            request,
            "login.html",
            None,
            next=_safe_next(next) or "",
            error="This token is not valid for the console.",
        )
    ttl = services.settings.gateway_session_ttl_s
    session_id = tokens.create_session(conn, info.id, timedelta(seconds=ttl))
    principal = Principal(
        actor=f"token:{info.id}:{info.name}", role=info.role, via="session", token_id=info.id
    )
    audit.record(
        conn,
        principal,
        "gateway.login",
        target_type="api_token",
        target_id=str(info.id),
        request_id=request_id,
    )
    response = RedirectResponse(_safe_next(next) or _home_for(principal), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=ttl,
        httponly=True,
        samesite="strict",
        secure=services.settings.gateway_cookie_secure,
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, conn: Conn) -> Response:
    """End the browser session."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        tokens.delete_session(conn, session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# ---------------------------------------------------------------- research
def _filters_from_query(request: Request) -> CohortFilters:
    params = request.query_params
    values: dict[str, Any] = {name: [v for v in params.getlist(name) if v.strip()] for name in _LIST_FIELDS}
    for name in ("age_min", "age_max"):
        raw = params.get(name, "").strip()
        values[name] = int(raw) if raw.isdigit() else None
    for name in ("study_date_from", "study_date_to"):
        values[name] = catalog.parse_study_date(params.get(name, "").strip() or None)
    return CohortFilters(**values)


@router.get("/ui/research", response_class=HTMLResponse)
def research_page(
    request: Request,
    principal: ResearchPage,
    conn: Conn,
    sort: Annotated[str, Query(pattern="^-?(study_date|age_years|pseudonym)$")] = "-study_date",
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> HTMLResponse:
    """The cohort builder: filters, the matching studies page by page, and the manifest download."""
    try:
        filters = _filters_from_query(request)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid filter value") from exc
    study_filters = filters.to_filters()
    try:
        page = catalog.search_studies(conn, study_filters, sort=sort, limit=50, cursor=cursor)
    except catalog.CatalogError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    counts = catalog.count_cohort(conn, study_filters)
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    next_url = (
        f"/ui/research?{urlencode([*query, ('cursor', page.next_cursor)])}" if page.next_cursor else None
    )
    return _render(
        request,
        "research.html",
        principal,
        filters=filters,
        sort=sort,
        page=page,
        counts=counts,
        facets=catalog.facets(conn),
        next_url=next_url,
        first_page=cursor is None,
        first_url=f"/ui/research?{urlencode(query)}",
        filter_pairs=[(k, v) for k, v in query if k != "sort"],
    )


@router.post("/ui/research/manifest")
async def research_manifest(
    request: Request, principal: ResearchPage, conn: Conn, services: ServicesDep, request_id: RequestId
) -> Response:
    """Download the manifest of the cohort described by the posted filter fields (JSON or CSV)."""
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    values: dict[str, Any] = {
        name: [str(v) for v in form.getlist(name) if str(v).strip()] for name in _LIST_FIELDS
    }
    for name in ("age_min", "age_max"):
        raw = str(form.get(name) or "").strip()
        values[name] = int(raw) if raw.isdigit() else None
    for name in ("study_date_from", "study_date_to"):
        values[name] = catalog.parse_study_date(str(form.get(name) or "").strip() or None)
    fmt = "csv" if form.get("format") == "csv" else "json"
    filters = CohortFilters(**values).to_filters()
    api_url = api_base_url(request, services)
    stream = await run_in_threadpool(
        open_manifest, services, conn, principal, filters, fmt=fmt, api_url=api_url, request_id=request_id
    )
    first = await run_in_threadpool(next, stream.body)
    return StreamingResponse(
        chained(first, stream.body),
        media_type=stream.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{stream.filename}"',
            "X-TMI-Manifest-Id": stream.manifest_id,
        },
    )


# ---------------------------------------------------------------- admin
def _crosswalk_call(func: Any, *args: Any, **kwargs: Any) -> Any:
    from tmi.crosswalk.model import InvalidChangeError, UnknownRecordError

    try:
        return func(*args, **kwargs)
    except UnknownRecordError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except InvalidChangeError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.get("/ui/admin", response_class=HTMLResponse)
def admin_queue(
    request: Request,
    principal: AdminPage,
    services: ServicesDep,
    request_id: RequestId,
    kind: str | None = None,
) -> HTMLResponse:
    """The review queue: open flags, each with the two identities' differing fields side by side."""
    crosswalk = services.crosswalk()
    actor = actor_of(principal, request_id)
    flags = crosswalk.list_flags(actor=actor, status="open", kind=kind or None, limit=50)
    details = [crosswalk.flag_detail(f.id, actor=actor) for f in flags]
    return _render(request, "admin_queue.html", principal, details=details, kind=kind or "")


@router.post("/ui/admin/flags/{flag_id}/resolve")
def admin_resolve_flag(
    flag_id: int,
    principal: AdminPage,
    services: ServicesDep,
    request_id: RequestId,
    resolution: Annotated[str, Form(min_length=1, max_length=4000)],
    action: Annotated[str, Form()] = "resolve",
    back: Annotated[str, Form()] = "/ui/admin",
) -> Response:
    """Resolve (or dismiss, or confirm the link of) a flag, then go back."""
    crosswalk = services.crosswalk()
    actor = actor_of(principal, request_id)
    if action == "confirm":
        flag = _crosswalk_call(crosswalk.flag_detail, flag_id, actor=actor).flag
        _crosswalk_call(crosswalk.confirm, flag.identity_id, actor=actor, reason=resolution, flag_id=flag_id)
    else:
        _crosswalk_call(crosswalk.resolve_flag, flag_id, resolution, actor=actor, dismiss=action == "dismiss")
    return RedirectResponse(_safe_next(back) or "/ui/admin", status_code=303)


@router.get("/ui/admin/search", response_class=HTMLResponse)
def admin_search_form(request: Request, principal: AdminPage) -> HTMLResponse:
    """The PHI search form."""
    return _render(request, "admin_search.html", principal, hits=None, form={})


@router.post("/ui/admin/search", response_class=HTMLResponse)
def admin_search(
    request: Request,
    principal: AdminPage,
    services: ServicesDep,
    request_id: RequestId,
    name: Annotated[str, Form(max_length=200)] = "",
    birth_date: Annotated[str, Form(max_length=10)] = "",
    patient_id: Annotated[str, Form(max_length=64)] = "",
    clinic: Annotated[str, Form(max_length=200)] = "",
) -> HTMLResponse:
    """Search persons by PHI (posted, never in the URL)."""
    form = {"name": name, "birth_date": birth_date, "patient_id": patient_id, "clinic": clinic}
    if not any(v.strip() for v in form.values()):
        return _render(
            request,
            "admin_search.html",
            principal,
            hits=None,
            form=form,
            error="Give at least one criterion.",
        )
    hits = _crosswalk_call(
        services.crosswalk().search_persons,
        actor=actor_of(principal, request_id),
        name=name.strip() or None,
        birth_date=birth_date.strip() or None,
        patient_id=patient_id.strip() or None,
        clinic=clinic.strip() or None,
    )
    return _render(request, "admin_search.html", principal, hits=hits, form=form)


@router.get("/ui/admin/persons/{person_id}", response_class=HTMLResponse)
def admin_person(
    request: Request,
    person_id: str,
    principal: AdminPage,
    services: ServicesDep,
    request_id: RequestId,
    conn: Conn,
) -> HTMLResponse:
    """A person: identities, pseudonym, studies with links into both Orthancs, notes with history, flags."""
    detail = _crosswalk_call(
        services.crosswalk().person_detail, person_id, actor=actor_of(principal, request_id)
    )
    links = {
        link.study_id: link
        for link in study_links(detail.studies, detail.person.pseudonym, services.settings)
    }
    research_studies = catalog.search_studies(
        conn, catalog.StudyFilters(pseudonym=(detail.person.pseudonym,)), sort="study_date", limit=200
    ).items
    return _render(
        request, "admin_person.html", principal, detail=detail, links=links, research_studies=research_studies
    )


@router.post("/ui/admin/persons/{person_id}/notes")
def admin_add_note(
    person_id: str,
    principal: AdminPage,
    services: ServicesDep,
    request_id: RequestId,
    body: Annotated[str, Form(min_length=1, max_length=20_000)],
) -> Response:
    """Add an admin note to a person."""
    _crosswalk_call(services.crosswalk().add_note, person_id, body, actor=actor_of(principal, request_id))
    return RedirectResponse(f"/ui/admin/persons/{person_id}#notes", status_code=303)


@router.post("/ui/admin/notes/{note_id}")
def admin_edit_note(
    note_id: int,
    principal: AdminPage,
    services: ServicesDep,
    request_id: RequestId,
    body: Annotated[str, Form(min_length=1, max_length=20_000)],
    person_id: Annotated[str, Form(max_length=64)],
    reason: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Save a new version of a note."""
    _crosswalk_call(
        services.crosswalk().edit_note,
        note_id,
        body,
        actor=actor_of(principal, request_id),
        reason=reason.strip() or None,
    )
    return RedirectResponse(f"/ui/admin/persons/{person_id}#note-{note_id}", status_code=303)


CORRECTABLE_FIELDS = ("patient_name", "birth_date", "sex", "patient_id", "issuer", "institution")


@router.post("/ui/admin/persons/{person_id}/corrections")
def admin_correct_phi(
    person_id: str,
    principal: AdminPage,
    services: ServicesDep,
    request_id: RequestId,
    identity_id: Annotated[int, Form()],
    field: Annotated[str, Form(max_length=40)],
    value: Annotated[str, Form(max_length=200)],
    reason: Annotated[str, Form(min_length=1, max_length=4000)],
) -> Response:
    """Record a PHI correction (a new identity pointing at the corrected one; the original stays)."""
    if field not in CORRECTABLE_FIELDS:
        raise HTTPException(422, "this field cannot be corrected here")
    _crosswalk_call(
        services.crosswalk().correct_phi,
        identity_id,
        {field: value.strip() or None},
        actor=actor_of(principal, request_id),
        reason=reason,
    )
    return RedirectResponse(f"/ui/admin/persons/{person_id}?changed=correction", status_code=303)


@router.post("/ui/admin/persons/{person_id}/split", response_class=HTMLResponse)
async def admin_split(
    request: Request, person_id: str, principal: AdminPage, services: ServicesDep, request_id: RequestId
) -> Response:
    """Split identities off a person: the first post shows a confirmation page, the second one acts."""
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    identity_ids = [int(str(v)) for v in form.getlist("identity_id") if str(v).isdigit()]
    reason = str(form.get("reason") or "").strip()
    if not identity_ids or not reason:
        raise HTTPException(422, "choose identities and give a reason")
    if form.get("confirmed") != "yes":
        return _render(
            request,
            "admin_confirm.html",
            principal,
            action="split",
            post_url=f"/ui/admin/persons/{person_id}/split",
            person_id=person_id,
            identity_ids=identity_ids,
            reason=reason,
            merge_ids=[],
        )
    result = await run_in_threadpool(
        _crosswalk_call,
        services.crosswalk().split,
        person_id,
        identity_ids,
        actor=actor_of(principal, request_id),
        reason=reason,
    )
    return RedirectResponse(f"/ui/admin/persons/{result.new_person_id}?changed=split", status_code=303)


@router.post("/ui/admin/persons/{person_id}/merge", response_class=HTMLResponse)
async def admin_merge(
    request: Request, person_id: str, principal: AdminPage, services: ServicesDep, request_id: RequestId
) -> Response:
    """Merge other persons into this one: the first post shows a confirmation page, the second one acts."""
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    merge_ids = [s for s in (str(v).strip() for v in form.getlist("merge_person_id")) if s]
    merge_ids += [s for s in str(form.get("merge_person_ids") or "").replace(",", " ").split() if s]
    merge_ids = list(dict.fromkeys(merge_ids))
    reason = str(form.get("reason") or "").strip()
    if not merge_ids or not reason:
        raise HTTPException(422, "name persons to merge and give a reason")
    if form.get("confirmed") != "yes":
        return _render(
            request,
            "admin_confirm.html",
            principal,
            action="merge",
            post_url=f"/ui/admin/persons/{person_id}/merge",
            person_id=person_id,
            identity_ids=[],
            reason=reason,
            merge_ids=merge_ids,
        )
    await run_in_threadpool(
        _crosswalk_call,
        services.crosswalk().merge,
        person_id,
        merge_ids,
        actor=actor_of(principal, request_id),
        reason=reason,
    )
    return RedirectResponse(f"/ui/admin/persons/{person_id}?changed=merge", status_code=303)


@router.get("/ui/admin/audit", response_class=HTMLResponse)
def admin_audit(
    request: Request,
    principal: AdminPage,
    services: ServicesDep,
    request_id: RequestId,
    action: str | None = None,
    actor: str | None = None,
) -> HTMLResponse:
    """The latest audit rows (filter by action or actor)."""
    rows = services.crosswalk().audit_query(
        actor=actor_of(principal, request_id), action=action or None, actor_name=actor or None, limit=200
    )
    return _render(request, "admin_audit.html", principal, rows=rows, action=action or "", actor=actor or "")


@router.get("/ui/admin/orthanc/{side}/studies/{study_id}")
def admin_orthanc_study(
    side: str, study_id: int, principal: AdminPage, conn: Conn, services: ServicesDep, request_id: RequestId
) -> Response:
    """Redirect to a crosswalk study in the intake or research Orthanc Explorer (audited; the original
    identifiers are read here so they never appear in a page URL)."""
    if side not in ("intake", "research"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown Orthanc")
    if side == "intake":
        row = conn.execute(
            "SELECT st.original_study_uid, s.patient_id FROM study st JOIN series se ON se.study_id = st.id "
            "JOIN instance i ON i.series_id = se.id JOIN scan_identity s ON s.id = i.identity_id "
            "WHERE st.id = %s LIMIT 1",
            (study_id,),
        ).fetchone()
        base = intake_base(services.settings)
    else:
        row = conn.execute(
            "SELECT st.anon_study_uid, p.pseudonym FROM study st JOIN series se ON se.study_id = st.id "
            "JOIN instance i ON i.series_id = se.id JOIN person p ON p.id = i.person_id "
            "WHERE st.id = %s LIMIT 1",
            (study_id,),
        ).fetchone()
        base = research_base(services.settings)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such study")
    audit.record(
        conn,
        principal,
        f"gateway.orthanc.{side}.open",
        target_type="study",
        target_id=str(study_id),
        request_id=request_id,
    )
    return RedirectResponse(explorer_study_url(base, row[1] or "", row[0]), status_code=303)
