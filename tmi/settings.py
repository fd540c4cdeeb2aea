"""The one settings object. Every adapter reads configuration from ``get_settings()``.

Values come from environment variables prefixed ``TMI_`` (e.g. ``TMI_DATABASE_URL``), and S3/SQS
endpoints from the standard ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL_SQS``
variables that boto3 itself honours, so the same code talks to MinIO, LocalStack, moto's server or AWS.
Nothing here connects to anything. Tests override with ``get_settings.cache_clear()`` and env vars.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """TMI configuration. Each field is set by ``TMI_<FIELD NAME IN CAPITALS>`` (``aws_region`` by
    ``AWS_DEFAULT_REGION``); the comments here are the reference. Pipeline tuning lives in
    ``adapters.pipeline.config`` (``TMI_PIPELINE_*``)."""

    model_config = SettingsConfigDict(env_prefix="TMI_", extra="ignore")

    # Local state: logs, PID files, the private PostgreSQL cluster, keys created on first use.
    run_dir: Path = Path(".run")

    # De-identification
    deid_profile: str = "clinic-research"
    deid_key_file: Path | None = None
    deid_key: str | None = Field(default=None, repr=False)  # hex or base64; prefer a key file

    # Crosswalk database. None means: the private cluster under run_dir, on pg_port.
    database_url: str | None = Field(default=None, repr=False)
    pg_port: int = 54329

    # Object store and queues (names; endpoints come from AWS_ENDPOINT_URL*)
    aws_region: str = Field(default="us-east-1", validation_alias="AWS_DEFAULT_REGION")
    intake_bucket: str = "tmi-intake"
    research_bucket: str = "tmi-research"
    quarantine_bucket: str = "tmi-quarantine"
    intake_prefix: str = "incoming/"
    intake_queue: str = "tmi-intake-events"
    intake_dlq: str = "tmi-intake-dlq"
    queue_max_receive_count: int = 5
    queue_visibility_timeout_s: int = 120
    s3_port: int = 9000  # the local S3/SQS emulator (moto server) when no endpoint is configured
    presign_expiry_s: int = 3600

    # Orthanc: intake (DIMSE from modalities) and research (DICOMweb for researchers)
    intake_aet: str = "INTAKE"
    intake_dicom_port: int = 4242
    intake_http_port: int = 8042
    research_aet: str = "RESEARCH"
    research_dicom_port: int = 4243
    research_http_port: int = 8043
    research_orthanc_user: str = "tmi-pipeline"
    research_orthanc_password: str = Field(default="", repr=False)
    host: str = "127.0.0.1"

    # Gateway
    gateway_port: int = 8000
    gateway_public_url: str | None = None  # base URL written into manifests for `tmi download` re-presigning
    gateway_pool_max: int = 10  # PostgreSQL connections per gateway process
    gateway_session_ttl_s: int = 8 * 3600  # browser session lifetime after login
    gateway_cookie_secure: bool = False  # set True behind HTTPS
    gateway_oidc_jwks_url: str | None = None  # optional OIDC/JWT bearer validation: JWKS endpoint...
    gateway_oidc_public_key: str | None = None  # ...or a PEM public key
    gateway_oidc_issuer: str | None = None
    gateway_oidc_audience: str | None = None
    gateway_oidc_algorithms: str = "RS256"  # comma-separated
    gateway_oidc_role_claim: str = "tmi_role"  # claim holding "researcher"/"admin" (string or list)

    @property
    def s3_endpoint_url(self) -> str | None:
        """The S3 endpoint boto3 will use, or ``None`` for AWS's default."""
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")

    @property
    def sqs_endpoint_url(self) -> str | None:
        """The SQS endpoint boto3 will use, or ``None`` for AWS's default."""
        return os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL")

    @property
    def local_database_url(self) -> str:
        """DSN of the private cluster the stack starts under ``run_dir``."""
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/tmi"

    @property
    def effective_database_url(self) -> str:
        """``database_url`` when set, else the private cluster's DSN."""
        return self.database_url or self.local_database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (cached; call ``get_settings.cache_clear()`` to reload)."""
    return Settings()
