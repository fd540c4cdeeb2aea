"""The gateway's long-lived resources: settings, the PostgreSQL pool, the S3 client, the event handler.

One :class:`Services` per app. Under uvicorn the lifespan opens it at start-up and closes it at shutdown;
under Lambda (mangum with ``lifespan="off"``) it opens on first use and stays open across warm
invocations. Nothing connects at import time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from psycopg_pool import ConnectionPool

from tmi.settings import Settings

logger = logging.getLogger(__name__)

EventHandler = Callable[[Mapping[str, Any], str], Mapping[str, Any]]


def _default_event_handler(document: Mapping[str, Any], request_id: str) -> Mapping[str, Any]:
    """Hand S3 event records to the pipeline's handler (imported on first use)."""
    from functions.intake_handler import handle_s3_document

    return handle_s3_document(document, request_id=request_id)


class Services:
    """Settings + lazily opened PostgreSQL pool + lazily built S3 client, shared by every request."""

    def __init__(
        self,
        settings: Settings,
        *,
        dsn: str | None = None,
        event_handler: EventHandler | None = None,
        s3_client: Any = None,
        pool_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.dsn = dsn or settings.effective_database_url
        self.event_handler: EventHandler = event_handler or _default_event_handler
        self._s3 = s3_client
        self.pool_timeout = pool_timeout
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._crosswalk: Any = None

    def open(self) -> None:
        """Open the connection pool (idempotent). Connections are made in the background."""
        with self._lock:
            if self._pool is None:
                pool = ConnectionPool(
                    self.dsn,
                    open=False,
                    min_size=1,
                    max_size=max(2, self.settings.gateway_pool_max),
                    kwargs={"autocommit": True, "connect_timeout": 5},
                    name="tmi-gateway",
                    timeout=self.pool_timeout,
                )
                pool.open()
                self._pool = pool
                logger.info("gateway database pool opened (max %d)", pool.max_size)

    def close(self) -> None:
        """Close the connection pools (idempotent)."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            if self._crosswalk is not None:
                self._crosswalk.close()
                self._crosswalk = None

    def crosswalk(self) -> Any:
        """The crosswalk service (``adapters.db.crosswalk.CrosswalkService``) on its own small pool.

        It has its own pool because its methods run one transaction per call (audit row and change
        commit together), while the gateway's request connections are autocommit.
        """
        if self._crosswalk is None:
            with self._lock:
                if self._crosswalk is None:
                    from adapters.db.crosswalk import CrosswalkService

                    self._crosswalk = CrosswalkService.connect(
                        self.dsn, min_size=1, max_size=max(2, self.settings.gateway_pool_max // 2)
                    )
        return self._crosswalk

    @property
    def pool(self) -> ConnectionPool:
        """The connection pool, opened on first use."""
        if self._pool is None:
            self.open()
        assert self._pool is not None
        return self._pool

    def s3(self) -> Any:
        """The boto3 S3 client for the research bucket (endpoint from ``AWS_ENDPOINT_URL*``), built once."""
        if self._s3 is None:
            with self._lock:
                if self._s3 is None:
                    import boto3
                    from botocore.config import Config

                    self._s3 = boto3.client(
                        "s3",
                        region_name=self.settings.aws_region,
                        endpoint_url=self.settings.s3_endpoint_url,
                        config=Config(signature_version="s3v4"),
                    )
        return self._s3
