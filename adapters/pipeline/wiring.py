"""Build the pipeline's service objects from the one settings object (lazily; nothing at import time)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

from tmi.settings import Settings, get_settings

from .config import PipelineSettings, get_pipeline_settings

logger = logging.getLogger(__name__)


class ThreadLocalDeidentifier:
    """One core ``Deidentifier`` + crosswalk pseudonym provider per thread.

    The crosswalk provider remembers the last resolution (the scan identity the recorder needs), so a
    provider must not be shared between threads processing different instances.
    """

    def __init__(self, crosswalk: Any, settings: Settings) -> None:
        from tmi.deid import load_key, load_profile

        self._crosswalk = crosswalk
        self._profile = load_profile(settings.deid_profile)
        self._key = load_key(settings.deid_key_file) if settings.deid_key_file else load_key()
        self._local = threading.local()
        from tmi.deid import UidMapper

        self._uids = UidMapper(self._key)
        self._uid_lock = threading.Lock()

    def map_uid(self, uid: str) -> str:
        """The research UID the core gives ``uid`` (same key, same keyed hash)."""
        with self._uid_lock:
            return str(self._uids.map(uid))

    def _pair(self) -> tuple[Any, Any]:
        pair = getattr(self._local, "pair", None)
        if pair is None:
            from adapters.db.crosswalk import PgPseudonymProvider
            from tmi.deid import Deidentifier

            provider = PgPseudonymProvider(self._crosswalk)
            pair = (Deidentifier(self._profile, self._key, pseudonyms=provider), provider)
            self._local.pair = pair
        return pair

    def deidentify(self, src: IO[bytes], dst: IO[bytes], calling_aet: str | None = None) -> Any:
        """De-identify with this thread's de-identifier (see ``tmi.deid.Deidentifier.deidentify``)."""
        deidentifier, provider = self._pair()
        provider.last_resolution = None
        return deidentifier.deidentify(src, dst, calling_aet=calling_aet)

    def deidentify_as(self, assignment: Any, src: IO[bytes], dst: IO[bytes],
                      calling_aet: str | None = None) -> Any:
        """De-identify under a person the crosswalk already decided (republish): no resolve, so no new
        scan identity is recorded for a re-read of an instance that arrived earlier."""
        from tmi.deid import Deidentifier

        deidentifier = Deidentifier(self._profile, self._key, pseudonyms=_FixedProvider(assignment))
        return deidentifier.deidentify(cast(BinaryIO, src), cast(BinaryIO, dst), calling_aet=calling_aet)

    def last_resolution(self) -> Any:
        """The crosswalk resolution made by this thread's last ``deidentify`` (or None)."""
        return self._pair()[1].last_resolution


class _FixedProvider:
    """A ``PseudonymProvider`` that returns one given assignment (republish under a decided person)."""

    def __init__(self, assignment: Any) -> None:
        self._assignment = assignment

    def assign(self, phi: Any) -> Any:
        """Return the fixed assignment whatever ``phi`` says."""
        return self._assignment


@dataclass
class PipelineContext:
    """Everything the handlers need, built once per process."""

    settings: Settings
    pipeline: PipelineSettings
    pool: Any
    crosswalk: Any
    s3: Any
    sqs: Any
    archive: Any
    deidentifier: ThreadLocalDeidentifier
    recorder: Any
    claims: Any

    def close(self) -> None:
        """Close database pools."""
        self.pool.close()
        self.crosswalk.close()


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client honouring ``AWS_ENDPOINT_URL*``, with a pool big enough for the worker threads."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", region_name=settings.aws_region,
                        config=Config(max_pool_connections=32,
                                      retries={"max_attempts": 3, "mode": "standard"},
                                      connect_timeout=5, read_timeout=60))


def sqs_client(settings: Settings) -> Any:
    """A boto3 SQS client honouring ``AWS_ENDPOINT_URL*``."""
    import boto3
    from botocore.config import Config

    return boto3.client("sqs", region_name=settings.aws_region,
                        config=Config(max_pool_connections=16,
                                      retries={"max_attempts": 3, "mode": "standard"},
                                      connect_timeout=5, read_timeout=30))


def research_orthanc(settings: Settings) -> Any:
    """The research Orthanc adapter with the pipeline account."""
    from .research import ResearchOrthanc

    password = settings.research_orthanc_password
    return ResearchOrthanc(f"http://{settings.host}:{settings.research_http_port}",
                           settings.research_orthanc_user, password)


def build_context(settings: Settings | None = None,
                  pipeline: PipelineSettings | None = None) -> PipelineContext:
    """Open the pools and create the clients the pipeline uses."""
    from psycopg_pool import ConnectionPool

    from adapters.db.crosswalk import CrosswalkService

    from .claims import ClaimStore
    from .recorder import PipelineRecorder

    settings = settings or get_settings()
    pipeline = pipeline or get_pipeline_settings()
    dsn = settings.effective_database_url
    pool: ConnectionPool = ConnectionPool(dsn, min_size=1, max_size=pipeline.db_pool_size, open=False,
                                          kwargs={"autocommit": True}, name="tmi-pipeline")
    pool.open(wait=True, timeout=30)  # on timeout it closes itself and raises PoolTimeout
    try:
        crosswalk = CrosswalkService.connect(dsn, max_size=pipeline.db_pool_size)
    except BaseException:
        pool.close()  # a caller that retries (tmi worker) must not leave this pool's threads behind
        raise
    deidentifier = ThreadLocalDeidentifier(crosswalk, settings)
    return PipelineContext(
        settings=settings, pipeline=pipeline, pool=pool, crosswalk=crosswalk, s3=s3_client(settings),
        sqs=sqs_client(settings), archive=research_orthanc(settings), deidentifier=deidentifier,
        recorder=PipelineRecorder(crosswalk, pool, deidentifier.last_resolution, deidentifier.map_uid),
        claims=ClaimStore(pool, pipeline.claim_ttl_s),
    )


def build_intake_service(context: PipelineContext | None = None) -> Any:
    """The intake service on ``context`` (built from the settings when omitted)."""
    from .service import IntakeService

    ctx = context or build_context()
    return IntakeService(
        s3=ctx.s3, claims=ctx.claims, deidentifier=ctx.deidentifier, archive=ctx.archive,
        recorder=ctx.recorder,
        research_bucket=ctx.settings.research_bucket, quarantine_bucket=ctx.settings.quarantine_bucket,
        tmp_dir=str(ctx.settings.run_dir / "tmp") if _ensure_dir(ctx.settings.run_dir / "tmp") else None,
    )


def _ensure_dir(path: Any) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return True
