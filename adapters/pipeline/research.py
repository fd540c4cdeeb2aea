"""The research Orthanc: STOW-RS and QIDO-RS through dicomweb-client, REST (health, lookups, deletes)
through pyorthanc. Clients are created on first use; nothing connects at import time.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from tmi.errors import RetryableError

logger = logging.getLogger(__name__)


class ResearchOrthanc:
    """Adapter for the research Orthanc (pipeline account: may store and delete)."""

    def __init__(self, http_url: str, username: str = "", password: str = "", timeout_s: float = 60.0,
                 dicomweb_root: str = "/dicom-web") -> None:
        self.http_url = http_url.rstrip("/")
        self.dicomweb_url = self.http_url + dicomweb_root
        self._auth = (username, password) if username else None
        self._timeout = timeout_s
        self._local = threading.local()  # requests sessions are not thread-safe: one per thread

    def _dicomweb(self) -> Any:
        client = getattr(self._local, "dicomweb", None)
        if client is None:
            import requests
            from dicomweb_client.api import DICOMwebClient

            session = requests.Session()
            if self._auth:
                session.auth = self._auth
            client = DICOMwebClient(url=self.dicomweb_url, session=session, timeout=self._timeout)
            # One attempt per delivery: the queue's redelivery is our retry policy.
            client.set_http_retry_params(retry=False)
            self._local.dicomweb = client
        return client

    def _rest(self) -> Any:
        client = getattr(self._local, "rest", None)
        if client is None:
            from pyorthanc import Orthanc

            if self._auth:
                client = Orthanc(self.http_url, username=self._auth[0], password=self._auth[1],
                                 timeout=self._timeout)
            else:
                client = Orthanc(self.http_url, timeout=self._timeout)
            self._local.rest = client
        return client

    def store(self, path: str) -> None:
        """STOW-RS the DICOM file at ``path``; raise RetryableError when Orthanc is unavailable or refuses.

        The file's bytes are posted as they are (dicomweb-client's multipart STOW request). Its public
        ``store_instances`` takes pydicom datasets and re-encodes them, which costs a full parse and write
        per instance and can alter the bytes the research bucket holds; it is the fallback only.
        """
        import requests

        client = self._dicomweb()
        for attempt in (1, 2):
            try:
                response = self._post(client, path)
                break
            except requests.ConnectionError as exc:
                # Orthanc's HTTP server closes idle keep-alive connections; a POST racing that close fails
                # with a ConnectionError (seen in bench.pipeline), which used to cost a 120 s redelivery.
                # One immediate retry on a fresh connection: storing is idempotent (same UIDs,
                # OverwriteInstances), and an Orthanc that is down fails both attempts at once.
                if attempt == 2:
                    raise RetryableError(f"research STOW-RS failed: {type(exc).__name__}") from exc
            except (requests.RequestException, OSError) as exc:
                raise RetryableError(f"research STOW-RS failed: {type(exc).__name__}") from exc
        failed = getattr(response, "FailedSOPSequence", None)
        if failed:
            reasons = ",".join(str(getattr(item, "FailureReason", "?")) for item in failed)
            raise RetryableError(f"research STOW-RS refused the instance (FailureReason {reasons})")

    @staticmethod
    def _post(client: Any, path: str) -> Any:
        post = getattr(client, "_http_post_multipart_application_dicom", None)
        if post is not None:
            from dicomweb_client.web import _Transaction

            with open(path, "rb") as handle:
                data = handle.read()
            return post(client._get_studies_url(_Transaction.STORE), [data])
        import pydicom  # pragma: no cover - other dicomweb-client versions

        return client.store_instances(datasets=[pydicom.dcmread(path)])  # pragma: no cover

    def search_instances(self, **search_filters: str) -> list[dict[str, Any]]:
        """QIDO-RS instance search (e.g. ``PatientID="TMI-..."``); returns DICOM JSON results."""
        return list(self._dicomweb().search_for_instances(search_filters=search_filters or None))

    def healthy(self) -> bool:
        """True when the REST API answers ``/system``."""
        try:
            self._rest().get_system()
        except Exception:  # noqa: BLE001 - any failure means "not healthy"; the caller decides what to do
            return False
        return True

    def find_instance(self, sop_instance_uid: str) -> str | None:
        """Orthanc's id of the instance with ``sop_instance_uid``, or None."""
        found = self._rest().post_tools_find(
            json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}})
        return str(found[0]) if found else None

    def delete_instance(self, sop_instance_uid: str) -> bool:
        """Delete the instance with ``sop_instance_uid``; False when it was not there."""
        import httpx

        orthanc_id = self.find_instance(sop_instance_uid)
        if orthanc_id is None:
            return False
        try:
            self._rest().delete_instances_id(orthanc_id)
        except httpx.HTTPError as exc:
            raise RetryableError(f"research delete failed: {type(exc).__name__}") from exc
        return True
