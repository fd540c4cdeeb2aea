"""The research Orthanc: STOW-RS on a plain keep-alive requests session, QIDO-RS through dicomweb-client,
REST (health, lookups, deletes) through pyorthanc. Clients are created on first use; nothing connects at
import time.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tmi.errors import RetryableError

logger = logging.getLogger(__name__)

STREAM_ABOVE = 16 * 1024 * 1024  # STOW-RS bodies of larger files are read from disk as they are sent


class _StreamedPart:
    """``head`` + the file's bytes + ``tail``, read in order; ``len()`` gives requests the Content-Length."""

    def __init__(self, path: str, head: bytes, tail: bytes) -> None:
        self._file = open(path, "rb")  # closed by close(), via _one_part_body
        self._size = len(head) + os.fstat(self._file.fileno()).st_size + len(tail)
        self._pieces: list[Any] = [io.BytesIO(head), self._file, io.BytesIO(tail)]

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        while self._pieces:
            block = self._pieces[0].read(size)
            if block:
                return block  # type: ignore[no-any-return]
            self._pieces.pop(0)
        return b""

    def close(self) -> None:
        self._file.close()


@contextmanager
def _one_part_body(path: str, head: bytes, tail: bytes) -> Iterator[bytes | _StreamedPart]:
    """The STOW-RS body for the file at ``path``: one buffer when small, a streamed part otherwise."""
    if os.path.getsize(path) <= STREAM_ABOVE:
        with open(path, "rb") as handle:
            yield b"".join((head, handle.read(), tail))
        return
    body = _StreamedPart(path, head, tail)
    try:
        yield body
    finally:
        body.close()


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

    def _session(self) -> Any:
        """This thread's STOW-RS session. Not shared with the dicomweb-client instance above: that client
        modifies the session it is given (its documentation warns against reusing one)."""
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = requests.Session()
            if self._auth:
                session.auth = self._auth
            self._local.session = session
        return session

    def store(self, path: str) -> None:
        """STOW-RS the DICOM file at ``path``; raise RetryableError when Orthanc is unavailable or refuses.

        The file's bytes are posted as they are, in the one-part ``multipart/related`` request
        dicomweb-client builds (PS3.18 STOW-RS), on this thread's keep-alive session. Files above
        :data:`STREAM_ABOVE` are streamed from disk with a ``Content-Length`` (a 500 MB tomosynthesis
        instance never sits in the worker's memory); smaller ones are sent from one buffer.
        dicomweb-client itself is not used for storing: its ``store_instances`` takes pydicom datasets and
        re-encodes them (a full parse and write per instance, and the bytes could differ from the research
        bucket's), and its internal poster wraps each request in a retry decorator and parses the whole
        response into a pydicom dataset; the response's DICOM JSON is read here for the one attribute that
        matters (FailedSOPSequence). One attempt per delivery: the queue's redelivery is the retry policy.
        """
        import requests

        boundary = uuid.uuid4().hex  # never inside the part: 128 random bits
        head = f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        tail = f"\r\n--{boundary}--".encode()
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary="{boundary}"',
                   "Accept": "application/dicom+json"}
        session = self._session()
        for attempt in (1, 2):
            try:
                with _one_part_body(path, head, tail) as body:
                    response = session.post(f"{self.dicomweb_url}/studies", data=body, headers=headers,
                                            timeout=self._timeout)
                response.raise_for_status()
                answer = response.json() if response.content else {}
                break
            except requests.ConnectionError as exc:
                # Orthanc's HTTP server closes idle keep-alive connections; a POST racing that close fails
                # with a ConnectionError (seen in bench.pipeline), which used to cost a 120 s redelivery.
                # One immediate retry on a fresh connection: storing is idempotent (same UIDs,
                # OverwriteInstances), and an Orthanc that is down fails both attempts at once.
                if attempt == 2:
                    raise RetryableError(f"research STOW-RS failed: {type(exc).__name__}") from exc
            except (requests.RequestException, OSError, ValueError) as exc:
                raise RetryableError(f"research STOW-RS failed: {type(exc).__name__}") from exc
        failed = (answer.get("00081198") or {}).get("Value") if isinstance(answer, dict) else None
        if failed:
            reasons = ",".join(str((item.get("00081197") or {}).get("Value", ["?"])[0]) for item in failed)
            raise RetryableError(f"research STOW-RS refused the instance (FailureReason {reasons})")

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
