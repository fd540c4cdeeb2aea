"""Republish: research data follows a crosswalk merge, split or PHI correction.

The crosswalk emits one work item per affected instance. For each item: read the original from the intake
bucket, de-identify it again (the crosswalk now resolves it to the new person, so the pseudonym and the
research key change; the research UIDs do not, they are keyed hashes of the original UIDs), remove the old
copy from the research Orthanc and the research bucket, publish the new one, update the catalog and mark
the item done. No PHI leaves the confidential side: only the new de-identified instance is published.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import Any

from tmi.errors import RetryableError
from tmi.ports import PseudonymAssignment

from .service import CALLING_AET_METADATA, CHUNK, _size_and_sha256

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RepublishOutcome:
    """What happened to one republish item (PHI-free)."""

    item_id: int
    outcome: str  # republished | withdrawn | failed
    old_key: str | None
    new_key: str | None
    reason: str | None = None


class RepublishService:
    """Processes crosswalk republish items with the pipeline's clients (see :class:`PipelineContext`)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def _delete_old(self, item: Any, new_key: str | None) -> None:
        archive = self.ctx.archive
        for _ in range(5):  # one SOP UID may exist under several patients in Orthanc after a split
            if not archive.delete_instance(item.anon_sop_uid):
                break
        if item.research_key and item.research_key != new_key:
            self.ctx.s3.delete_object(Bucket=self.ctx.settings.research_bucket, Key=item.research_key)

    def process(self, item: Any) -> RepublishOutcome:
        """Republish one item; raise RetryableError when a dependency is down."""
        settings = self.ctx.settings
        log = {"republish_item": item.id, "object_key": item.intake_key, "pseudonym": item.new_pseudonym}
        if not item.intake_key:
            self._delete_old(item, None)
            self.ctx.recorder.withdraw_catalog(item.anon_sop_uid)
            self.ctx.crosswalk.complete_republish_item(item.id)
            logger.warning("no intake object to republish from; withdrawn", extra={"tmi": log})
            return RepublishOutcome(item.id, "withdrawn", item.research_key, None, "intake.missing")
        tmp_dir = str(settings.run_dir / "tmp") if (settings.run_dir / "tmp").is_dir() else None
        with tempfile.TemporaryFile(dir=tmp_dir) as src, tempfile.NamedTemporaryFile(dir=tmp_dir) as dst:
            try:
                response = self.ctx.s3.get_object(Bucket=settings.intake_bucket, Key=item.intake_key)
                for chunk in iter(lambda: response["Body"].read(CHUNK), b""):
                    src.write(chunk)
            except Exception as exc:
                raise RetryableError(f"intake read failed: {type(exc).__name__}") from exc
            calling_aet = (response.get("Metadata") or {}).get(CALLING_AET_METADATA) or None
            src.seek(0)
            assignment = PseudonymAssignment(pseudonym=item.new_pseudonym, alias=item.new_alias,
                                             person_id=item.new_person_id)
            result = self.ctx.deidentifier.deidentify_as(assignment, src, dst, calling_aet=calling_aet)
            if result.outcome != "written":
                self._delete_old(item, None)
                self.ctx.recorder.withdraw_catalog(item.anon_sop_uid)
                self.ctx.crosswalk.set_instance_state(item.instance_id, "quarantined", detail=result.reason)
                self.ctx.crosswalk.complete_republish_item(item.id)
                return RepublishOutcome(item.id, "withdrawn", item.research_key, None, result.reason)
            dst.flush()
            size, sha256 = _size_and_sha256(dst)
            new_key = str(result.research_key)
            pseudonym = result.assignment.pseudonym if result.assignment else None
            self._delete_old(item, new_key)
            self.ctx.s3.upload_file(dst.name, settings.research_bucket, new_key,
                                       ExtraArgs={"ContentType": "application/dicom",
                                                  "Metadata": {"pseudonym": pseudonym or ""}})
            self.ctx.archive.store(dst.name)
            self.ctx.recorder.published(result, intake_bucket=settings.intake_bucket,
                                        intake_key=item.intake_key, research_bucket=settings.research_bucket,
                                        research_key=new_key, size=size, sha256=sha256, crosswalk=False)
        self.ctx.crosswalk.complete_republish_item(item.id, research_key=new_key)
        logger.info("republished", extra={"tmi": {**log, "old_key": item.research_key, "new_key": new_key}})
        return RepublishOutcome(item.id, "republished", item.research_key, new_key)

    def drain(self, limit: int = 50, stale_after_s: int = 120) -> list[RepublishOutcome]:
        """Claim and process pending items until none is left (or ``limit`` per claim round)."""
        outcomes: list[RepublishOutcome] = []
        while True:
            items = self.ctx.crosswalk.claim_republish_items(limit, stale_after_s=stale_after_s)
            if not items:
                return outcomes
            for item in items:
                try:
                    outcomes.append(self.process(item))
                except RetryableError as exc:
                    # Left claimed: handed out again after stale_after_s.
                    logger.warning("republish failed; will retry", extra={"tmi": {"republish_item": item.id,
                                                                                  "error": str(exc)[:200]}})
                    outcomes.append(
                        RepublishOutcome(item.id, "failed", item.research_key, None, str(exc)[:200]))
            if any(o.outcome == "failed" for o in outcomes):
                return outcomes
