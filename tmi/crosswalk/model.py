"""Typed results of the crosswalk service (plain dataclasses; the repository fills them with class_row).

These shapes are the contract with the gateway (``/admin``) and the pipeline. Fields marked PHI are
confidential: only the audited service methods return them, and they must never be logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tmi.errors import TmiError

ROLES = ("admin", "service", "researcher")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a user or a service name, its role (``admin``, ``service``…) and the request id."""

    name: str
    role: str
    request_id: str | None = None


SYSTEM_ACTOR = Actor(name="pipeline", role="service")


@dataclass(frozen=True, slots=True)
class Resolution:
    """Outcome of ``resolve``: the person the incoming PHI belongs to, and flags raised now."""

    person_id: str
    pseudonym: str
    alias: str
    flags: tuple[str, ...]
    identity_id: int
    created_person: bool = False
    rule: str = "exact_arrival"


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    pseudonym: str
    alias: str
    sex: str | None
    status: str
    merged_into: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Identity:
    """A scan identity (PHI) with its current link; ``kind`` is ``arrived`` or ``correction``."""

    id: int
    kind: str
    corrects_id: int | None
    patient_id: str | None
    issuer: str | None
    institution: str | None
    calling_aet: str | None
    patient_name: str | None
    birth_date: str | None
    sex: str | None
    other_ids: list[str]
    source: str | None
    created_at: datetime
    created_by: str
    reason: str | None
    person_id: str | None = None
    link_method: str | None = None
    link_confidence: float | None = None
    link_rule: str | None = None
    superseded_by: int | None = None


@dataclass(frozen=True, slots=True)
class Link:
    id: int
    identity_id: int
    person_id: str
    method: str
    confidence: float
    rule: str
    change_id: int | None
    valid_from: datetime
    valid_to: datetime | None
    created_by: str
    closed_by: str | None


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    id: int
    original_study_uid: str
    anon_study_uid: str
    original_series_uid: str
    anon_series_uid: str
    original_sop_uid: str
    anon_sop_uid: str
    person_id: str
    identity_id: int
    accession: str | None
    study_date: str | None
    intake_key: str | None
    research_key: str | None
    state: str
    state_detail: str | None


@dataclass(frozen=True, slots=True)
class StudySummary:
    id: int
    original_study_uid: str
    anon_study_uid: str
    accession: str | None
    study_date: str | None
    instances: int


@dataclass(frozen=True, slots=True)
class Flag:
    id: int
    kind: str
    status: str
    identity_id: int
    person_id: str
    other_person_id: str | None
    other_identity_id: int | None
    evidence: dict[str, Any]
    created_at: datetime
    resolution: str | None
    resolved_by: str | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class FlagDetail:
    """A flag with both identities side by side (PHI; audited read)."""

    flag: Flag
    identity: Identity
    other_identity: Identity | None
    differing_fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NoteVersion:
    note_id: int
    version: int
    body: str
    edited_at: datetime
    edited_by: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class Note:
    id: int
    person_id: str
    source: str
    keyword: str | None
    created_at: datetime
    created_by: str
    version: int
    body: str
    history: tuple[NoteVersion, ...] = ()


@dataclass(frozen=True, slots=True)
class PersonSummary:
    """A search hit: the person and the PHI that matched (audited read)."""

    person_id: str
    pseudonym: str
    alias: str
    sex: str | None
    patient_name: str | None
    birth_date: str | None
    patient_id: str | None
    clinic: str | None
    identities: int


@dataclass(frozen=True, slots=True)
class PersonDetail:
    person: Person
    identities: tuple[Identity, ...]
    links: tuple[Link, ...]
    studies: tuple[StudySummary, ...]
    notes: tuple[Note, ...]
    flags: tuple[Flag, ...]


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """A confirm / merge / split / correction: the change row and the republish items it emitted."""

    change_id: int
    kind: str
    person_ids: tuple[str, ...]
    identity_ids: tuple[int, ...] = ()
    republish_items: int = 0
    new_person_id: str | None = None
    new_identity_id: int | None = None


@dataclass(frozen=True, slots=True)
class RepublishItem:
    """A work item for the pipeline: re-publish one instance under its (new) person's pseudonym."""

    id: int
    change_id: int
    instance_id: int
    reason: str
    original_sop_uid: str
    anon_sop_uid: str
    intake_key: str | None
    research_key: str | None
    old_pseudonym: str | None
    new_person_id: str
    new_pseudonym: str
    new_alias: str
    attempts: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target_type: str | None
    target_id: str | None
    request_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


class CrosswalkError(TmiError):
    """A crosswalk operation was refused; the message never contains PHI."""


class UnknownRecordError(CrosswalkError, LookupError):
    """The person, identity, flag, note or item named does not exist (gateway: 404)."""


class InvalidChangeError(CrosswalkError, ValueError):
    """The requested change contradicts the current state (gateway: 409/422)."""
