"""Bookkeeping after de-identification: the crosswalk's instance rows and notes, the research catalog.

The crosswalk (``adapters.db.crosswalk.CrosswalkService``) keeps original ↔ research UIDs, the person, the
object keys and the instance state; the research catalog (``adapters.db.catalog``) keeps the
research-safe attributes the gateway queries. The identity a resolve produced comes from the thread's
pseudonym provider (``last_resolution``), so this recorder and the de-identifier share a thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)


class PipelineRecorder:
    """Implements :class:`adapters.pipeline.service.Recorder` on the crosswalk and the catalog."""

    def __init__(self, crosswalk: Any, pool: ConnectionPool, last_resolution: Callable[[], Any],
                 uid_map: Callable[[str], str]) -> None:
        self._crosswalk = crosswalk
        self._pool = pool
        self._last_resolution = last_resolution
        self._uid_map = uid_map
        # (person, note text digest) pairs this process has stored: the four images of a study repeat
        # the same free text, and the crosswalk stores it once anyway (ON CONFLICT DO NOTHING), so the
        # repeats skip that transaction. Bounded; a miss only costs the (idempotent) call.
        self._notes_done: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._notes_lock = threading.Lock()

    def _new_notes(self, person_id: str, notes: list[Any]) -> tuple[list[Any], list[tuple[str, str]]]:
        fresh, keys = [], []
        with self._notes_lock:
            for item in notes:
                text = item if isinstance(item, str) else item[1]
                key = (person_id, hashlib.sha256(text.strip().encode("utf-8")).hexdigest())
                if key not in self._notes_done:
                    fresh.append(item)
                    keys.append(key)
        return fresh, keys

    def _notes_stored(self, keys: list[tuple[str, str]]) -> None:
        with self._notes_lock:
            for key in keys:
                self._notes_done[key] = None
            while len(self._notes_done) > 20_000:
                self._notes_done.popitem(last=False)

    def _record_instance(self, result: Any, *, intake_key: str, research_key: str | None, state: str,
                         detail: str | None) -> Any:
        resolution = self._last_resolution()
        original = result.original
        if original is None:
            return None
        if resolution is None:
            if result.phi is None:
                return None
            # Quarantined before the core asked for a pseudonym (e.g. burned-in annotation): resolve the
            # person now so the quarantined instance is listed under the right person for review.
            resolution = self._crosswalk.resolve(result.phi, source=f"intake:{intake_key}")
        study_uid = result.research.study_instance_uid if result.research else self._uid_map(
            original.study_instance_uid)
        series_uid = result.research.series_instance_uid if result.research else self._uid_map(
            original.series_instance_uid)
        sop_uid = result.research.sop_instance_uid if result.research else self._uid_map(
            original.sop_instance_uid)
        record = self._crosswalk.record_instance(
            person_id=resolution.person_id, identity_id=resolution.identity_id,
            original_study_uid=original.study_instance_uid, anon_study_uid=study_uid,
            original_series_uid=original.series_instance_uid, anon_series_uid=series_uid,
            original_sop_uid=original.sop_instance_uid, anon_sop_uid=sop_uid,
            accession=getattr(original, "accession_number", None) or None,
            study_date=getattr(original, "study_date", None) or None,
            modality=(result.catalog or {}).get("modality") if isinstance(result.catalog, dict) else None,
            sop_class_uid=getattr(original, "sop_class_uid", None) or None,
            intake_key=intake_key, research_key=research_key, state=state, state_detail=detail,
        )
        if record.anon_study_uid != study_uid:
            logger.warning("crosswalk kept another anonymized study UID for this study",
                           extra={"tmi": {"object_key": intake_key, "instance_id": record.id}})
        if result.notes:
            fresh, keys = self._new_notes(str(resolution.person_id), list(result.notes))
            if fresh:
                self._crosswalk.add_dicom_notes(resolution.person_id, fresh)
                self._notes_stored(keys)
        return record

    def published(self, result: Any, *, intake_bucket: str, intake_key: str, research_bucket: str,
                  research_key: str, size: int, sha256: str, crosswalk: bool = True) -> None:
        """Record the published instance in the crosswalk (state ``published``) and the catalog.

        ``crosswalk=False`` (republish) updates the catalog only: the crosswalk already moved the instance
        and marks it published when the work item completes."""
        from adapters.db.catalog import CatalogEntry, upsert_instance

        if crosswalk:
            self._record_instance(result, intake_key=intake_key, research_key=research_key,
                                  state="published", detail=None)
        research = result.research
        entry = CatalogEntry.from_catalog(
            dict(result.catalog or {}), study_instance_uid=research.study_instance_uid,
            series_instance_uid=research.series_instance_uid, sop_instance_uid=research.sop_instance_uid,
            bucket_key=research_key, size_bytes=size, sha256=sha256,
        )
        with self._pool.connection() as conn:
            upsert_instance(conn, entry)

    def quarantined(self, result: Any | None, *, intake_bucket: str, intake_key: str, reason: str,
                    detail: str) -> None:
        """Mark the crosswalk instance ``quarantined`` when the instance could be identified."""
        if result is None:
            return
        self._record_instance(result, intake_key=intake_key, research_key=None, state="quarantined",
                              detail=reason)

    def withdraw_catalog(self, sop_instance_uid: str) -> None:
        """Remove an instance from the research catalog (republish moves it)."""
        from adapters.db.catalog import delete_instance

        with self._pool.connection() as conn:
            delete_instance(conn, sop_instance_uid)
