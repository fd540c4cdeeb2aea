"""``/admin``: the IT staff's PHI console API (admin only). Every route calls the crosswalk service, which
audits every PHI read and every write with the caller as actor; token management is audited here.

PHI never travels in a URL: searches are POSTed, and paths carry only surrogate ids (person UUIDs,
identity/flag/note numbers).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from adapters.db import tokens
from gateway import audit
from gateway.deps import Admin, Conn, Principal, RequestId, ServicesDep, require_admin
from gateway.orthanc_links import study_links
from gateway.schemas import (
    AuditEntry,
    ChangeResult,
    Confirm,
    Correction,
    Flag,
    FlagDetail,
    Identity,
    Merge,
    Note,
    NoteEdit,
    NoteIn,
    Person,
    PersonPage,
    PersonSearch,
    PersonSummary,
    ResolveFlag,
    Split,
    TokenCreate,
    TokenOut,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


def actor_of(principal: Principal, request_id: str) -> Any:
    """The crosswalk ``Actor`` for this caller and request."""
    from tmi.crosswalk.model import Actor

    return Actor(name=principal.actor, role=principal.role, request_id=request_id or None)


def _actor(principal: Admin, request_id: RequestId) -> Any:
    return actor_of(principal, request_id)


ActorDep = Annotated[Any, Depends(_actor)]


@router.post("/persons/search", response_model=list[PersonSummary], summary="Search persons by PHI")
def search_persons(body: PersonSearch, services: ServicesDep, actor: ActorDep) -> Any:
    """Persons whose identities match every given criterion (name tokens, birth date, patient ID, clinic)."""
    if not any((body.name, body.birth_date, body.patient_id, body.clinic)):
        raise HTTPException(422, "give at least one criterion")
    return services.crosswalk().search_persons(
        actor=actor,
        name=body.name or None,
        birth_date=body.birth_date or None,
        patient_id=body.patient_id or None,
        clinic=body.clinic or None,
        limit=body.limit,
    )


@router.get("/persons/by-pseudonym/{pseudonym}", response_model=Person, summary="Re-identify a pseudonym")
def person_by_pseudonym(pseudonym: str, services: ServicesDep, actor: ActorDep) -> Any:
    """The person behind a research pseudonym (audited re-identification)."""
    return services.crosswalk().person_by_pseudonym(pseudonym, actor=actor)


@router.get("/persons/{person_id}", response_model=PersonPage, summary="A person: identities, studies, notes")
def person_detail(person_id: str, services: ServicesDep, actor: ActorDep) -> Any:
    """Identities, pseudonym, studies (with links into both Orthancs), notes with history, flags."""
    detail = services.crosswalk().person_detail(person_id, actor=actor)
    return PersonPage(
        detail=detail, links=study_links(detail.studies, detail.person.pseudonym, services.settings)
    )


@router.post("/persons/merge", response_model=ChangeResult, summary="Merge persons")
def merge_persons(body: Merge, services: ServicesDep, actor: ActorDep) -> Any:
    """Merge ``merge_person_ids`` into ``keep_person_id`` (their instances are re-published)."""
    return services.crosswalk().merge(
        body.keep_person_id, body.merge_person_ids, actor=actor, reason=body.reason
    )


@router.post(
    "/persons/{person_id}/split", response_model=ChangeResult, summary="Split identities off a person"
)
def split_person(person_id: str, body: Split, services: ServicesDep, actor: ActorDep) -> Any:
    """Move ``identity_ids`` into a new person (their instances are re-published under a new pseudonym)."""
    return services.crosswalk().split(person_id, body.identity_ids, actor=actor, reason=body.reason)


@router.post("/persons/{person_id}/notes", response_model=Note, status_code=201, summary="Add a note")
def add_note(person_id: str, body: NoteIn, services: ServicesDep, actor: ActorDep) -> Any:
    """Attach an admin note to a person."""
    return services.crosswalk().add_note(person_id, body.body, actor=actor)


@router.get("/notes/{note_id}", response_model=Note, summary="A note with its history")
def get_note(note_id: int, services: ServicesDep, actor: ActorDep) -> Any:
    """A note and every earlier version of it."""
    return services.crosswalk().note(note_id, actor=actor)


@router.put("/notes/{note_id}", response_model=Note, summary="Edit a note (new version)")
def edit_note(note_id: int, body: NoteEdit, services: ServicesDep, actor: ActorDep) -> Any:
    """Record a new version of a note; earlier versions stay."""
    return services.crosswalk().edit_note(note_id, body.body, actor=actor, reason=body.reason)


@router.get("/identities/{identity_id}", response_model=Identity, summary="A scan identity")
def get_identity(identity_id: int, services: ServicesDep, actor: ActorDep) -> Any:
    """One scan identity (PHI as it arrived, or a correction) with its current link."""
    return services.crosswalk().identity(identity_id, actor=actor)


@router.post("/identities/{identity_id}/confirm", response_model=ChangeResult, summary="Confirm a link")
def confirm_identity(identity_id: int, body: Confirm, services: ServicesDep, actor: ActorDep) -> Any:
    """Confirm that an identity belongs to its current person (optionally resolving a flag)."""
    return services.crosswalk().confirm(identity_id, actor=actor, reason=body.reason, flag_id=body.flag_id)


@router.post("/identities/{identity_id}/corrections", response_model=ChangeResult, summary="Correct PHI")
def correct_identity(identity_id: int, body: Correction, services: ServicesDep, actor: ActorDep) -> Any:
    """Record a PHI correction as a new identity pointing at the one it corrects."""
    return services.crosswalk().correct_phi(identity_id, body.changes, actor=actor, reason=body.reason)


@router.get("/flags", response_model=list[Flag], summary="The review queue")
def list_flags(
    services: ServicesDep,
    actor: ActorDep,
    flag_status: Annotated[str | None, Query(alias="status")] = "open",
    kind: str | None = None,
    person_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: int | None = None,
) -> Any:
    """Review flags, newest first (``status=any`` for every status)."""
    return services.crosswalk().list_flags(
        actor=actor,
        status=None if flag_status in (None, "any") else flag_status,
        kind=kind,
        person_id=person_id,
        limit=limit,
        before_id=before_id,
    )


@router.get("/flags/{flag_id}", response_model=FlagDetail, summary="A flag, identities side by side")
def flag_detail(flag_id: int, services: ServicesDep, actor: ActorDep) -> Any:
    """A flag with the incoming and the compared identity and the fields that differ."""
    return services.crosswalk().flag_detail(flag_id, actor=actor)


@router.post("/flags/{flag_id}/resolve", response_model=Flag, summary="Resolve or dismiss a flag")
def resolve_flag(flag_id: int, body: ResolveFlag, services: ServicesDep, actor: ActorDep) -> Any:
    """Close an open flag with a resolution text."""
    return services.crosswalk().resolve_flag(flag_id, body.resolution, actor=actor, dismiss=body.dismiss)


@router.get("/audit", response_model=list[AuditEntry], summary="Query the audit log")
def query_audit(
    services: ServicesDep,
    actor: ActorDep,
    actor_name: Annotated[str | None, Query(alias="actor")] = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: int | None = None,
) -> Any:
    """Audit rows, newest first (the query is itself audited)."""
    return services.crosswalk().audit_query(
        actor=actor,
        actor_name=actor_name,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
        limit=limit,
        before_id=before_id,
    )


@router.get("/tokens", response_model=list[TokenOut], summary="List API tokens (never the tokens)")
def list_api_tokens(conn: Conn, principal: Admin, request_id: RequestId) -> Any:
    """Every API token's id, name, role and timestamps."""
    records = tokens.list_tokens(conn)
    audit.record(
        conn,
        principal,
        "gateway.tokens.list",
        target_type="api_token",
        request_id=request_id,
        detail={"count": len(records)},
    )
    return [TokenOut.model_validate(r, from_attributes=True) for r in records]


@router.post("/tokens", response_model=TokenOut, status_code=201, summary="Create an API token")
def create_api_token(body: TokenCreate, conn: Conn, principal: Admin, request_id: RequestId) -> Any:
    """Create a token; the response is the only place the token ever appears."""
    with conn.transaction():
        info, token = tokens.create_token(conn, name=body.name, role=body.role)
        audit.record(
            conn,
            principal,
            "gateway.token.create",
            target_type="api_token",
            target_id=str(info.id),
            request_id=request_id,
            detail={"role": info.role},
        )
    out = TokenOut.model_validate(info, from_attributes=True)
    out.token = token
    return out


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke an API token")
def revoke_api_token(token_id: int, conn: Conn, principal: Admin, request_id: RequestId) -> None:
    """Revoke a token and end its browser sessions."""
    with conn.transaction():
        if not tokens.revoke_token(conn, token_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no live token with that id")
        audit.record(
            conn,
            principal,
            "gateway.token.revoke",
            target_type="api_token",
            target_id=str(token_id),
            request_id=request_id,
        )
