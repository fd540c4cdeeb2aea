"""``/research``: cohort search, cohort manifests with presigned URLs, re-presigning. Researcher or admin.

Nothing under this prefix reads PHI: the catalog holds research-safe attributes only, and every response
model comes from the research part of :mod:`gateway.schemas`.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from adapters.db import catalog
from gateway import audit
from gateway.deps import Conn, RequestId, Researcher, ServicesDep, require_researcher
from gateway.manifest import chained, open_manifest
from gateway.presign import Presigner
from gateway.schemas import (
    CohortCountsOut,
    CohortFilters,
    CohortRequest,
    FacetsOut,
    ManifestFormat,
    PresignOut,
    PresignRequest,
    StudyOut,
    StudyPageOut,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/research", tags=["research"], dependencies=[Depends(require_researcher)])


def api_base_url(request: Request, services: ServicesDep) -> str:
    """The gateway's public base URL (setting, else the URL this request came in on)."""
    return (services.settings.gateway_public_url or str(request.base_url)).rstrip("/")


def study_query_filters(
    pseudonym: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    sex: Annotated[list[str], Query()] = [],  # noqa: B006
    ethnic_group: Annotated[list[str], Query()] = [],  # noqa: B006
    modality: Annotated[list[str], Query()] = [],  # noqa: B006
    body_part: Annotated[list[str], Query()] = [],  # noqa: B006
    view_position: Annotated[list[str], Query()] = [],  # noqa: B006
    laterality: Annotated[list[str], Query()] = [],  # noqa: B006
    manufacturer: Annotated[list[str], Query()] = [],  # noqa: B006
    model: Annotated[list[str], Query()] = [],  # noqa: B006
    age_min: Annotated[int | None, Query(ge=0, le=150)] = None,
    age_max: Annotated[int | None, Query(ge=0, le=150)] = None,
    study_date_from: date | None = None,
    study_date_to: date | None = None,
) -> CohortFilters:
    """Cohort filters from the query string (repeat for alternatives: ``modality=MG&modality=CR``)."""
    return CohortFilters(
        pseudonym=pseudonym,
        sex=sex,
        ethnic_group=ethnic_group,
        modality=modality,
        body_part=body_part,
        view_position=view_position,
        laterality=laterality,
        manufacturer=manufacturer,
        model=model,
        age_min=age_min,
        age_max=age_max,
        study_date_from=study_date_from,
        study_date_to=study_date_to,
    )


@router.get("/studies", response_model=StudyPageOut, summary="Search studies (keyset-paginated)")
def list_studies(
    conn: Conn,
    filters: Annotated[CohortFilters, Depends(study_query_filters)],
    sort: Annotated[str, Query(pattern="^-?(study_date|age_years|pseudonym)$")] = "-study_date",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> StudyPageOut:
    """Studies matching the filters, ``limit`` per page, continuing after ``cursor``."""
    try:
        page = catalog.search_studies(conn, filters.to_filters(), sort=sort, limit=limit, cursor=cursor)
    except catalog.CatalogError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    return StudyPageOut(
        items=[StudyOut.model_validate(s, from_attributes=True) for s in page.items],
        next_cursor=page.next_cursor,
        sort=sort,
    )


@router.get("/facets", response_model=FacetsOut, summary="Values present in the catalog (for pick-lists)")
def get_facets(conn: Conn) -> FacetsOut:
    """Distinct sexes, ethnic groups, modalities, body parts, views and lateralities in the catalog."""
    return FacetsOut(**catalog.facets(conn))


@router.post("/cohorts/count", response_model=CohortCountsOut, summary="Size of a cohort")
def count_cohort(conn: Conn, body: CohortFilters) -> CohortCountsOut:
    """How many studies, instances and bytes a manifest for these filters would hold."""
    counts = catalog.count_cohort(conn, body.to_filters())
    return CohortCountsOut(studies=counts.studies, instances=counts.instances, total_bytes=counts.total_bytes)


def _negotiate(request: Request, body_format: str | None, query_format: str | None) -> str:
    fmt = query_format or body_format
    if fmt:
        return fmt
    accept = request.headers.get("accept", "")
    return "csv" if "text/csv" in accept and "application/json" not in accept else "json"


@router.post(
    "/cohorts",
    summary="Cohort manifest (JSON or CSV) with presigned GET URLs, streamed",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/json": {}, "text/csv": {}},
            "description": "the manifest; JSON fields are ManifestHeader + instances[ManifestInstance]",
        }
    },
)
def create_cohort_manifest(
    request: Request,
    conn: Conn,
    principal: Researcher,
    services: ServicesDep,
    body: CohortRequest,
    request_id: RequestId,
    api_url: Annotated[str, Depends(api_base_url)],
    format: Annotated[ManifestFormat | None, Query()] = None,
) -> StreamingResponse:
    """Every instance matching the filters with key, size, SHA-256 and a presigned URL; audited."""
    fmt = _negotiate(request, body.format, format)
    stream = open_manifest(
        services, conn, principal, body.to_filters(), fmt=fmt, api_url=api_url, request_id=request_id
    )
    first = next(stream.body)
    return StreamingResponse(
        chained(first, stream.body),
        media_type=stream.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{stream.filename}"',
            "X-TMI-Manifest-Id": stream.manifest_id,
            "X-TMI-Instance-Count": str(stream.count),
        },
    )


@router.post("/presign", response_model=PresignOut, summary="Presign research objects again")
def presign_again(
    conn: Conn, principal: Researcher, services: ServicesDep, body: PresignRequest, request_id: RequestId
) -> PresignOut:
    """Fresh presigned URLs for published research objects (``tmi download`` uses this when URLs expire)."""
    keys = list(dict.fromkeys(body.keys))
    known = catalog.known_keys(conn, keys)
    settings = services.settings
    presigner = Presigner.from_client(services.s3(), settings.research_bucket, settings.presign_expiry_s)
    audit.record(
        conn,
        principal,
        "research.presign",
        target_type="research_objects",
        request_id=request_id,
        detail={"requested": len(keys), "signed": len(known)},
    )
    return PresignOut(
        expires_at=presigner.expires_at,
        urls={key: presigner.url(key) for key in keys if key in known},
        unknown=[key for key in keys if key not in known],
    )
