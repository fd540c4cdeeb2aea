"""``/events/s3``: S3 event records posted by a MinIO webhook target, handed to the pipeline's handler.

Admin or service tokens only (a researcher gets 403). A non-2xx answer makes MinIO keep and retry the event,
so any object the pipeline could not process yet yields 503; a body that is not S3 event records yields 400.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse

from gateway.deps import RequestId, ServicesDep, require_events
from gateway.schemas import EventResult

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/events", tags=["events"], dependencies=[Depends(require_events)])

MAX_EVENT_BYTES = 1 << 20


@router.post("/s3", response_model=EventResult, responses={503: {"model": EventResult}})
async def s3_event(request: Request, services: ServicesDep, request_id: RequestId) -> Any:
    """Process the posted S3 event records (``{"Records": [...]}``) with the intake handler."""
    raw = await request.body()
    if len(raw) > MAX_EVENT_BYTES:
        raise HTTPException(413, "event body too large")
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("Records"), list):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not S3 event records")
    from starlette.concurrency import run_in_threadpool

    try:
        outcome = await run_in_threadpool(services.event_handler, document, request_id)
    except ValueError as exc:  # the pipeline's MalformedEventError is a ValueError
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed S3 event: {type(exc).__name__}") from exc
    result = EventResult(
        processed=list(outcome.get("processed", [])),
        failed=list(outcome.get("failed", [])),
        test_event=bool(outcome.get("test_event", False)),
    )
    logger.info("s3 event: %d processed, %d failed", len(result.processed), len(result.failed))
    if result.failed:
        return JSONResponse(result.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return result
