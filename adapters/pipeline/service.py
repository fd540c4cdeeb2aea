"""The intake service: one intake object in, one research instance (or one quarantine record) out.

Steps for each object (``IntakeService.process``):

1. claim the object version idempotently (:class:`~adapters.pipeline.claims.ClaimStore`);
2. stream it from the intake bucket into a temporary file (never the whole object in memory);
3. de-identify it with the core ``Deidentifier`` (its pseudonym provider resolves the person in the
   crosswalk);
4. put the result to the research bucket (``<pseudonym>/<study>/<series>/<sop>.dcm``, multipart for
   large files), STOW-RS it to the research Orthanc, record it in the crosswalk and the research catalog;
5. mark the claim COMPLETED.

A quarantined result (or a :class:`~tmi.errors.PoisonInputError`) copies the intake object to the
quarantine bucket with the reason as metadata, raises a review flag, records the quarantine and counts as
done: poison is never retried. A dependency failure raises :class:`~tmi.errors.RetryableError` after
releasing the claim, so the message comes back after the visibility timeout (and ends in the DLQ after
``maxReceiveCount`` deliveries).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any, Protocol

from functions.events import S3ObjectRef
from tmi.errors import PoisonInputError, RetryableError

from .claims import ClaimState, ClaimStore

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
CALLING_AET_METADATA = "calling-aet"


class Outcome(StrEnum):
    """What :meth:`IntakeService.process` did with one object."""

    PUBLISHED = "published"
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"  # already completed or quarantined earlier: nothing to do
    GONE = "gone"  # the object no longer exists in the intake bucket


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """Outcome of one object, with PHI-free correlation data for logs and the demo summary."""

    outcome: Outcome
    key: str
    pseudonym: str | None = None
    research_key: str | None = None
    reason: str | None = None
    flags: tuple[str, ...] = ()
    seconds: float = 0.0


class Deidentifier(Protocol):
    """The core de-identifier (``tmi.deid.Deidentifier``), as the service uses it."""

    def deidentify(self, src: IO[bytes], dst: IO[bytes], calling_aet: str | None = None) -> Any:
        """De-identify ``src`` into ``dst``; return a ``DeidResult``."""
        ...


class ResearchArchive(Protocol):
    """The research Orthanc as the service uses it (STOW-RS); see :mod:`adapters.pipeline.research`."""

    def store(self, path: str) -> None:
        """Store the DICOM file at ``path``; raise RetryableError when the archive is unavailable."""
        ...


class Recorder(Protocol):
    """Crosswalk + research catalog bookkeeping; see :mod:`adapters.pipeline.recorder`."""

    def published(self, result: Any, *, intake_bucket: str, intake_key: str, research_bucket: str,
                  research_key: str, size: int, sha256: str, crosswalk: bool = True) -> None:
        """Record a published instance (crosswalk instance row unless ``crosswalk`` is False, and the
        research catalog row)."""
        ...

    def quarantined(self, result: Any | None, *, intake_bucket: str, intake_key: str, reason: str,
                    detail: str) -> None:
        """Raise the review flag for a quarantined instance."""
        ...


@dataclass
class IntakeService:
    """Processes intake objects; every collaborator is injected (see :func:`adapters.pipeline.wiring`)."""

    s3: Any
    claims: ClaimStore
    deidentifier: Deidentifier
    archive: ResearchArchive
    recorder: Recorder
    research_bucket: str
    quarantine_bucket: str
    tmp_dir: str | None = None
    clock: Callable[[], float] = field(default=time.monotonic)

    def process(self, obj: S3ObjectRef, request_id: str = "") -> ProcessResult:
        """Process one intake object version; see the module docstring. Raises RetryableError."""
        started = self.clock()
        log = {"object_key": obj.key, "etag": obj.etag, "request_id": request_id}
        claim = self.claims.claim(obj, message=request_id or None)
        if not claim.claimed:
            if claim.state in (ClaimState.COMPLETED, ClaimState.QUARANTINED):
                logger.info("duplicate delivery skipped", extra={"tmi": {**log, "state": str(claim.state)}})
                return ProcessResult(Outcome.DUPLICATE, obj.key)
            if request_id and claim.message and claim.message != request_id:
                # Another message (a duplicate notification) holds a live claim on the same object
                # version; that message stays unacknowledged until its holder finishes, so if the holder
                # dies, *its* redelivery finishes the work. This one can be acknowledged now.
                logger.info("duplicate notification while in flight elsewhere; acknowledged",
                            extra={"tmi": log})
                return ProcessResult(Outcome.DUPLICATE, obj.key)
            # Our own message again (its earlier holder died or is slow): retry until the claim expires.
            raise RetryableError(f"object is being processed by another worker (state {claim.state})")
        try:
            result = self._process_claimed(obj, log)
        except RetryableError as exc:
            self._release(obj, type(exc).__name__)
            raise
        except Exception as exc:
            # Unknown failure: release and retry; maxReceiveCount bounds the retries (then the DLQ).
            # The JSON log formatter records the exception class only (messages may quote values).
            logger.exception("unexpected processing error", extra={"tmi": log})
            self._release(obj, type(exc).__name__)
            raise RetryableError(f"{type(exc).__name__}: processing failed") from exc
        seconds = self.clock() - started
        logger.info(
            "intake object processed",
            extra={"tmi": {**log, "outcome": str(result.outcome), "pseudonym": result.pseudonym,
                           "research_key": result.research_key, "reason": result.reason,
                           "seconds": round(seconds, 4)}},
        )
        return ProcessResult(result.outcome, result.key, result.pseudonym, result.research_key, result.reason,
                             result.flags, seconds)

    def _release(self, obj: S3ObjectRef, error: str) -> None:
        try:
            self.claims.release(obj, error)
        except Exception:  # the claim expires anyway; never mask the original error
            logger.exception("could not release claim", extra={"tmi": {"object_key": obj.key}})

    def _process_claimed(self, obj: S3ObjectRef, log: dict[str, Any]) -> ProcessResult:
        with (tempfile.TemporaryFile(dir=self.tmp_dir) as src,
              tempfile.NamedTemporaryFile(dir=self.tmp_dir) as dst):
            calling_aet = self._download(obj, src)
            if calling_aet is None:  # deleted since the event: nothing to publish, nothing to retry
                self.claims.complete(obj, pseudonym=None, research_key=None, study_uid=None, series_uid=None,
                                     sop_uid=None)
                return ProcessResult(Outcome.GONE, obj.key)
            src.seek(0)
            try:
                result = self.deidentifier.deidentify(src, dst, calling_aet=calling_aet or None)
            except PoisonInputError as exc:
                return self._quarantine(obj, None, exc.reason, exc.detail, calling_aet)
            if result.outcome != "written":
                reason, detail = str(result.reason or "unknown"), str(result.detail or "")
                return self._quarantine(obj, result, reason, detail, calling_aet)
            dst.flush()
            size, sha256 = _size_and_sha256(dst)
            assignment = result.assignment
            pseudonym = assignment.pseudonym if assignment is not None else None
            research_key = str(result.research_key)
            self._put_research(dst.name, research_key, pseudonym)
            self.archive.store(dst.name)
            self.recorder.published(result, intake_bucket=obj.bucket, intake_key=obj.key,
                                    research_bucket=self.research_bucket, research_key=research_key,
                                    size=size, sha256=sha256)
            research = result.research
            self.claims.complete(
                obj, pseudonym=pseudonym, research_key=research_key,
                study_uid=getattr(research, "study_instance_uid", None),
                series_uid=getattr(research, "series_instance_uid", None),
                sop_uid=getattr(research, "sop_instance_uid", None),
            )
            flags = tuple(assignment.flags) if assignment is not None else ()
            return ProcessResult(Outcome.PUBLISHED, obj.key, pseudonym, research_key, None, flags)

    def _download(self, obj: S3ObjectRef, fileobj: IO[bytes]) -> str | None:
        """Stream the object into ``fileobj`` chunk by chunk; return its calling-AET metadata ("" when
        absent), or ``None`` when the object no longer exists."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            kwargs: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
            if obj.version_id:
                kwargs["VersionId"] = obj.version_id
            response = self.s3.get_object(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NoSuchVersion"):
                return None
            raise RetryableError(f"intake get failed: {code}") from exc
        except BotoCoreError as exc:
            raise RetryableError(f"intake get failed: {type(exc).__name__}") from exc
        body = response["Body"]
        try:
            for chunk in iter(lambda: body.read(CHUNK), b""):
                fileobj.write(chunk)
        except BotoCoreError as exc:
            raise RetryableError(f"intake read failed: {type(exc).__name__}") from exc
        finally:
            body.close()
        metadata = response.get("Metadata") or {}
        return str(metadata.get(CALLING_AET_METADATA, "")) or ""

    def _put_research(self, path: str, research_key: str, pseudonym: str | None) -> None:
        """Upload the de-identified file (:func:`adapters.s3_upload.put_file`: streamed when large)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from adapters.s3_upload import put_file

        try:
            put_file(self.s3, path, self.research_bucket, research_key, content_type="application/dicom",
                     metadata={"pseudonym": pseudonym or ""})
        except (BotoCoreError, ClientError) as exc:
            raise RetryableError(f"research put failed: {type(exc).__name__}") from exc

    def _quarantine(self, obj: S3ObjectRef, result: Any | None, reason: str, detail: str,
                    calling_aet: str | None) -> ProcessResult:
        """Copy the intake object to quarantine with the reason, flag it, record it: done, not retried."""
        from botocore.exceptions import BotoCoreError, ClientError

        quarantine_key = obj.key
        try:
            self.s3.copy_object(
                Bucket=self.quarantine_bucket, Key=quarantine_key,
                CopySource={"Bucket": obj.bucket, "Key": obj.key,
                            **({"VersionId": obj.version_id} if obj.version_id else {})},
                MetadataDirective="REPLACE",
                Metadata={"tmi-reason": reason, "tmi-detail": _ascii(detail)[:1024],
                          "tmi-source-bucket": obj.bucket, "tmi-source-key": obj.key,
                          CALLING_AET_METADATA: calling_aet or ""},
                ContentType="application/dicom",
            )
        except (BotoCoreError, ClientError) as exc:
            raise RetryableError(f"quarantine copy failed: {type(exc).__name__}") from exc
        self.recorder.quarantined(result, intake_bucket=obj.bucket, intake_key=obj.key, reason=reason,
                                  detail=detail)
        assignment = getattr(result, "assignment", None) if result is not None else None
        pseudonym = assignment.pseudonym if assignment is not None else None
        self.claims.quarantine(obj, reason=reason, detail=detail, quarantine_bucket=self.quarantine_bucket,
                               quarantine_key=quarantine_key, calling_aet=calling_aet, pseudonym=pseudonym)
        flags = tuple(assignment.flags) if assignment is not None else ()
        return ProcessResult(Outcome.QUARANTINED, obj.key, pseudonym, None, reason, flags)


def _ascii(text: str) -> str:
    """S3 user metadata must be ASCII."""
    return text.encode("ascii", "replace").decode("ascii")


def _size_and_sha256(fileobj: IO[bytes]) -> tuple[int, str]:
    """Size and SHA-256 of a whole file, read in chunks (the catalog records both)."""
    fileobj.seek(0)
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: fileobj.read(CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()
