"""Writes every instance the intake Orthanc receives into the intake bucket (plain module, no ``orthanc``).

The Orthanc plugin (``orthanc/plugin/intake_plugin.py``) calls :meth:`IntakeWriter.write` from its
stored-instance callback with the instance bytes, Orthanc's instance id and the calling AE title.

Object keys carry no PHI: ``incoming/<yyyy>/<mm>/<dd>/<orthanc instance id>.dcm``, where Orthanc's
instance id is a SHA-1 over the patient/study/series/SOP identifiers (irreversible). The calling AE title
travels as object metadata (``x-amz-meta-calling-aet``), which the pipeline passes to the de-identifier
and the crosswalk as the sending clinic.

The plugin uses :meth:`IntakeWriter.enqueue`: the callback only writes the instance to a local spool
folder (one small file write; the callback runs inside the C-STORE path, so it must be fast) and background
uploader threads put it to the bucket and delete the spool file. If the object store is unreachable the
files stay in the spool and are retried; files left by a crash are uploaded at the next start. An instance
Orthanc accepted is therefore never silently lost. :meth:`IntakeWriter.write` is the synchronous variant.

Large instances (a 500 MB tomosynthesis) are not copied at all: :meth:`IntakeWriter.enqueue_stored`
spools a small reference (Orthanc's instance id and size), and the uploader streams Orthanc's own stored
file, which ``stored_file`` (given by the plugin) locates. Orthanc's Python API hands an instance over only
as one ``bytes`` object, which would put a second 500 MB copy in the Orthanc process; the lookup runs in the
uploader thread because the Orthanc SDK advises against calling its REST API inside the stored-instance
callback. If the stored file has gone (the instance was deleted from the intake Orthanc before its upload)
the reference moves to ``<spool>/failed/`` and an error is logged: nothing retries it forever, nothing is
dropped silently.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.s3_upload import put_file

logger = logging.getLogger(__name__)

CALLING_AET_METADATA = "calling-aet"


class IntakeWriter:
    """Puts instances into ``bucket`` under ``prefix``; spools to ``spool_dir`` when S3 fails."""

    def __init__(self, bucket: str, prefix: str, spool_dir: Path,
                 client_factory: Callable[[], Any] | None = None,
                 stored_file: Callable[[str, int], Path] | None = None) -> None:
        self.bucket = bucket
        # (Orthanc instance id, expected size) -> the stored file; raises StoredFileGone when it is not there
        self.stored_file = stored_file
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.spool_dir = Path(spool_dir)
        self._client_factory = client_factory or _default_s3_client
        self._client: Any = None
        self._lock = threading.Lock()
        self._queue: queue.Queue[Path] = queue.Queue()
        self._queued: set[Path] = set()  # handed to the uploaders: the periodic drainer leaves them alone
        self._uploaders: list[threading.Thread] = []

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def key_for(self, instance_id: str, when: datetime | None = None) -> str:
        """``incoming/<yyyy>/<mm>/<dd>/<instance id>.dcm`` (UTC date of receipt)."""
        when = when or datetime.now(UTC)
        safe_id = "".join(c for c in instance_id if c.isalnum() or c in "-_")
        return f"{self.prefix}{when:%Y/%m/%d}/{safe_id}.dcm"

    def write(self, instance_id: str, data: bytes, calling_aet: str | None) -> str:
        """Put one instance; on failure spool it for a later retry. Returns the object key."""
        key = self.key_for(instance_id)
        try:
            self._put(key, data, calling_aet)
        except Exception as exc:  # noqa: BLE001 - any S3 failure: never lose the instance
            logger.error("intake put failed, spooled for retry: %s (%s)", key, type(exc).__name__)
            self._spool(key, data, calling_aet)
        return key

    def _put(self, key: str, data: bytes, calling_aet: str | None) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType="application/dicom",
            Metadata=_metadata(calling_aet),
        )

    def _spool(self, key: str, data: bytes, calling_aet: str | None) -> Path:
        self.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = key.replace("/", "_")
        tmp = self.spool_dir / (name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.spool_dir / name)
        return self._write_meta(key, {"calling_aet": calling_aet})

    def _write_meta(self, key: str, fields: dict[str, Any]) -> Path:
        """The spool entry's ``.json``, written last and atomically: an entry is complete when it exists."""
        self.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        meta = self.spool_dir / (key.replace("/", "_") + ".json")
        meta_tmp = meta.with_name(meta.name + ".tmp")
        meta_tmp.write_text(json.dumps({"key": key, **fields}))
        os.replace(meta_tmp, meta)
        return meta

    def enqueue(self, instance_id: str, data: bytes, calling_aet: str | None) -> str:
        """Spool one instance and hand it to the uploader threads (:meth:`start_uploaders`)."""
        key = self.key_for(instance_id)
        self._hand_over(self._spool(key, data, calling_aet))
        return key

    def enqueue_stored(self, instance_id: str, size: int, calling_aet: str | None) -> str:
        """Spool a reference to an instance Orthanc has stored; the uploader streams Orthanc's own file
        (located by ``stored_file``). For large instances: nothing is copied in the callback."""
        if self.stored_file is None:
            raise ValueError("enqueue_stored needs a stored_file locator")
        key = self.key_for(instance_id)
        self._hand_over(self._write_meta(key, {"calling_aet": calling_aet, "orthanc_instance": instance_id,
                                               "size": size}))
        return key

    def _hand_over(self, meta: Path) -> None:
        with self._lock:
            self._queued.add(meta)
        self._queue.put(meta)

    def _upload_spooled(self, meta_path: Path) -> bool:
        """Upload one spool entry; True when this call uploaded it (False: another thread or the drainer
        already did, or it was set aside)."""
        data_path = meta_path.with_suffix("")
        try:
            meta = json.loads(meta_path.read_text())
            if "orthanc_instance" in meta:
                return self._upload_stored(meta_path, meta)
            put_file(self.client, data_path, self.bucket, meta["key"], content_type="application/dicom",
                     metadata=_metadata(meta.get("calling_aet")))
        except FileNotFoundError:
            return False  # another thread (or the drainer) uploaded it already
        data_path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        return True

    def _upload_stored(self, meta_path: Path, meta: dict[str, Any]) -> bool:
        """Upload Orthanc's stored file for a spooled reference; a file that has gone is set aside."""
        if self.stored_file is None:
            raise RuntimeError("a spooled Orthanc reference, but no stored_file locator")
        try:
            path = self.stored_file(str(meta["orthanc_instance"]), int(meta["size"]))
            put_file(self.client, path, self.bucket, meta["key"], content_type="application/dicom",
                     metadata=_metadata(meta.get("calling_aet")))
        except (StoredFileGone, FileNotFoundError) as exc:
            failed = self.spool_dir / "failed"
            failed.mkdir(exist_ok=True, mode=0o700)
            os.replace(meta_path, failed / meta_path.name)
            logger.error("intake: the stored file of %s is gone (%s); its reference is in %s, not uploaded",
                         meta["key"], type(exc).__name__, failed)
            return False
        meta_path.unlink(missing_ok=True)
        return True

    def start_uploaders(self, count: int = 2, retry_s: float = 5.0) -> None:
        """Start ``count`` daemon threads uploading spooled instances; failures wait ``retry_s`` and retry."""
        def loop() -> None:
            while True:
                meta_path = self._queue.get()
                while True:
                    try:
                        self._upload_spooled(meta_path)
                        with self._lock:
                            self._queued.discard(meta_path)
                        break
                    except Exception as exc:  # noqa: BLE001 - keep the file, retry later
                        logger.warning("intake upload failed, retrying: %s", type(exc).__name__)
                        time.sleep(retry_s)

        for n in range(count):
            thread = threading.Thread(target=loop, name=f"tmi-intake-upload-{n}", daemon=True)
            thread.start()
            self._uploaders.append(thread)

    def pending(self) -> int:
        """Spooled instances not uploaded yet."""
        return spool_counts(self.spool_dir)["pending"]

    def drain_spool(self) -> int:
        """Upload every spooled instance; return how many were uploaded (stops at the first failure)."""
        if not self.spool_dir.exists():
            return 0
        done = 0
        for meta_path in sorted(self.spool_dir.glob("*.json")):
            with self._lock:
                if meta_path in self._queued:
                    continue  # an uploader thread owns it (and retries it)
            try:
                uploaded = self._upload_spooled(meta_path)
            except Exception as exc:  # noqa: BLE001 - still down: keep the spool, try later
                logger.warning("spool drain paused: %s", type(exc).__name__)
                break
            done += int(uploaded)
        return done

    def run_spool_drainer(self, interval_s: float = 5.0,
                          stop: threading.Event | None = None) -> threading.Thread:
        """Start a daemon thread that drains the spool every ``interval_s`` seconds."""
        stop = stop or threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.drain_spool()
                except Exception:  # the drainer must never die
                    logger.exception("spool drain failed")
                time.sleep(0)

        thread = threading.Thread(target=loop, name="tmi-intake-spool", daemon=True)
        thread.start()
        return thread


def spool_counts(spool_dir: Path) -> dict[str, int]:
    """``pending``: instances accepted by the intake Orthanc and not yet in the bucket (a backlog that grows
    while the object store is unreachable); ``failed``: references set aside because Orthanc's stored file
    had gone (``failed/``, see :meth:`IntakeWriter._upload_stored`)."""
    def count(folder: Path) -> int:
        return sum(1 for _ in folder.glob("*.json")) if folder.is_dir() else 0

    return {"pending": count(spool_dir), "failed": count(spool_dir / "failed")}


class StoredFileGone(LookupError):
    """Orthanc's stored file for an instance is not there (deleted, or not the size Orthanc reported)."""


def _metadata(calling_aet: str | None) -> dict[str, str]:
    """The intake object's metadata: the calling AE title (the sending clinic)."""
    return {CALLING_AET_METADATA: (calling_aet or "").strip()}


def orthanc_instance_id(patient_id: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Orthanc's identifier of an instance: SHA-1 of ``PatientID|Study|Series|SOP`` in 5 dash groups.

    It lets a sender (the demo, the benchmark) predict the intake object key of what it sends.
    """
    import hashlib

    digest = hashlib.sha1("|".join((patient_id, study_uid, series_uid, sop_uid)).encode(),
                          usedforsecurity=False).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def _default_s3_client() -> Any:
    """A boto3 S3 client honouring ``AWS_ENDPOINT_URL*`` (the environment Orthanc was started with)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 2, "mode": "standard"},
                                            connect_timeout=3, read_timeout=30))


def orthanc_storage_path(storage_dir: Path, uuid: str) -> Path:
    """Where Orthanc's file storage area keeps attachment ``uuid``: ``<dir>/<uu>/<uu>/<uuid>``."""
    return storage_dir / uuid[0:2] / uuid[2:4] / uuid


def from_config(config: dict[str, Any],
                stored_file: Callable[[str, int], Path] | None = None) -> IntakeWriter:
    """Build a writer from the ``Tmi`` section of the intake Orthanc configuration."""
    return IntakeWriter(
        bucket=str(config.get("IntakeBucket") or "tmi-intake"),
        prefix=str(config.get("IntakePrefix") or "incoming/"),
        spool_dir=Path(str(config.get("SpoolDirectory") or ".run/intake-spool")),
        stored_file=stored_file,
    )
