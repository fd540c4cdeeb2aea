"""Request and response models of every gateway route, in one module.

Research models (``Research*``/``Study*``/``Cohort*``/``Manifest*``/``Presign*``) hold research-safe
attributes only — pseudonyms, de-identified UIDs, coarse attributes, object keys — and a unit test checks
their field names against an allow-list, so a PHI field cannot be added by accident. Admin models carry PHI
and are only used by ``/admin`` routes.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters.db.catalog import SORT_KEYS, StudyFilters

# The crosswalk's typed results are the admin response shapes (FastAPI serializes dataclasses), so the
# console's API cannot drift from the service's contract. Only /admin routes use them.
from tmi.crosswalk.model import (
    AuditEntry,
    ChangeResult,
    Flag,
    FlagDetail,
    Identity,
    Note,
    Person,
    PersonDetail,
    PersonSummary,
)

__all__ = [
    "AuditEntry",
    "ChangeResult",
    "Flag",
    "FlagDetail",
    "Identity",
    "Note",
    "Person",
    "PersonDetail",
    "PersonSummary",
]

ManifestFormat = Literal["json", "csv"]


class ResearchModel(BaseModel):
    """Base of research models: unknown fields are refused, so nothing extra slips in."""

    model_config = ConfigDict(extra="forbid")


class CohortFilters(ResearchModel):
    """Cohort filters; list values are alternatives, every given filter must match."""

    pseudonym: list[str] = Field(default_factory=list, max_length=10_000)
    sex: list[str] = Field(default_factory=list, max_length=10)
    ethnic_group: list[str] = Field(default_factory=list, max_length=100)
    modality: list[str] = Field(default_factory=list, max_length=100)
    body_part: list[str] = Field(default_factory=list, max_length=100)
    view_position: list[str] = Field(default_factory=list, max_length=100)
    laterality: list[str] = Field(default_factory=list, max_length=10)
    manufacturer: list[str] = Field(default_factory=list, max_length=100)
    model: list[str] = Field(default_factory=list, max_length=100)
    age_min: int | None = Field(default=None, ge=0, le=150)
    age_max: int | None = Field(default=None, ge=0, le=150)
    study_date_from: date | None = None
    study_date_to: date | None = None
    study_instance_uids: list[str] = Field(default_factory=list, max_length=100_000)

    def to_filters(self) -> StudyFilters:
        """Convert to the catalog's filter object."""
        values: dict[str, Any] = {}
        for key, value in self.model_dump(include=set(CohortFilters.model_fields)).items():
            values[key] = tuple(v for v in value if v) if isinstance(value, list) else value
        return StudyFilters(**values)


class StudyOut(ResearchModel):
    """One study in the research study list."""

    study_instance_uid: str
    pseudonym: str
    sex: str | None
    age_years: int | None
    ethnic_group: str | None
    study_date: date | None
    modalities: list[str]
    body_parts: list[str]
    view_positions: list[str]
    lateralities: list[str]
    manufacturers: list[str]
    models: list[str]
    series_count: int
    instance_count: int
    total_bytes: int


class StudyPageOut(ResearchModel):
    """A page of studies; pass ``next_cursor`` as ``cursor`` to get the next page (null on the last)."""

    items: list[StudyOut]
    next_cursor: str | None
    sort: str = Field(description=f"one of {', '.join(SORT_KEYS)}")


class CohortRequest(CohortFilters):
    """``POST /research/cohorts``: the filters of the cohort (and optionally the manifest format)."""

    format: ManifestFormat | None = None


class CohortCountsOut(ResearchModel):
    """How large a cohort manifest would be."""

    studies: int
    instances: int
    total_bytes: int


class ManifestInstance(ResearchModel):
    """One instance of a cohort manifest (the JSON manifest's ``instances`` items; the CSV's columns)."""

    key: str
    size: int
    sha256: str
    url: str
    pseudonym: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    modality: str | None
    view_position: str | None
    laterality: str | None


class ManifestHeader(ResearchModel):
    """The JSON manifest's top-level fields besides ``instances`` (documented for clients)."""

    manifest_version: int
    manifest_id: str
    created_at: datetime
    expires_at: datetime
    api_url: str
    bucket: str
    filters: dict[str, Any]
    count: int
    total_bytes: int


class PresignRequest(ResearchModel):
    """``POST /research/presign``: research-bucket keys to sign again (expired manifest URLs)."""

    keys: list[str] = Field(min_length=1, max_length=10_000)


class PresignOut(ResearchModel):
    """Fresh URLs for the known keys; ``unknown`` lists keys that are not published research objects."""

    expires_at: datetime
    urls: dict[str, str]
    unknown: list[str]


class FacetsOut(ResearchModel):
    """Values present in the catalog, for filter pick-lists."""

    sex: list[str]
    ethnic_group: list[str]
    modality: list[str]
    body_part: list[str]
    view_position: list[str]
    laterality: list[str]


class EventResult(BaseModel):
    """``POST /events/s3``: what the pipeline did with the posted records."""

    processed: list[dict[str, Any]]
    failed: list[str]
    test_event: bool = False


# ---------------------------------------------------------------- admin (PHI; /admin only)
class AdminModel(BaseModel):
    """Base of admin request models (unknown fields refused)."""

    model_config = ConfigDict(extra="forbid")


class PersonSearch(AdminModel):
    """PHI search (sent in the body, so PHI never lands in URLs or access logs)."""

    name: str | None = Field(default=None, max_length=200)
    birth_date: str | None = Field(default=None, max_length=10)
    patient_id: str | None = Field(default=None, max_length=64)
    clinic: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=500)


class OrthancLinks(BaseModel):
    """Links of one study into both Orthancs (through the gateway's lookup redirect)."""

    study_id: int
    intake: str
    research: str


class PersonPage(BaseModel):
    """A person's detail plus links of each study into the intake and research Orthancs."""

    detail: PersonDetail
    links: list[OrthancLinks]


class ResolveFlag(AdminModel):
    resolution: str = Field(min_length=1, max_length=4000)
    dismiss: bool = False


class Confirm(AdminModel):
    reason: str = Field(min_length=1, max_length=4000)
    flag_id: int | None = None


class Correction(AdminModel):
    changes: dict[str, Any] = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=4000)


class NoteIn(AdminModel):
    body: str = Field(min_length=1, max_length=20_000)


class NoteEdit(AdminModel):
    body: str = Field(min_length=1, max_length=20_000)
    reason: str | None = Field(default=None, max_length=4000)


class Merge(AdminModel):
    keep_person_id: str
    merge_person_ids: list[str] = Field(min_length=1, max_length=50)
    reason: str = Field(min_length=1, max_length=4000)


class Split(AdminModel):
    identity_ids: list[int] = Field(min_length=1, max_length=500)
    reason: str = Field(min_length=1, max_length=4000)


class TokenCreate(AdminModel):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["researcher", "admin", "service"]


class TokenOut(BaseModel):
    """A token record; ``token`` is set only in the response that created it."""

    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    token: str | None = None
