"""Links from the admin console into the intake and research Orthanc Explorers.

Orthanc names a study by ``SHA-1(PatientID + "|" + StudyInstanceUID)`` written as five dash-separated
groups of eight hex digits, so a link can be computed without asking Orthanc (and without giving the
gateway Orthanc credentials; the admin's browser logs in to Orthanc itself). The research study is named by
(pseudonym, research study UID); the intake study by (original PatientID, original study UID), which the
gateway resolves on click through an audited redirect so no PHI sits in a page URL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from gateway.schemas import OrthancLinks
from tmi.settings import Settings


def orthanc_id(*parts: str) -> str:
    """Orthanc's identifier of a resource from its DICOM identifiers (``"|"``-joined SHA-1, grouped)."""
    digest = hashlib.sha1("|".join(parts).encode("utf-8"), usedforsecurity=False).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def intake_base(settings: Settings) -> str:
    """Base URL of the intake Orthanc's web interface."""
    return f"http://{settings.host}:{settings.intake_http_port}"


def research_base(settings: Settings) -> str:
    """Base URL of the research Orthanc's web interface."""
    return f"http://{settings.host}:{settings.research_http_port}"


def explorer_study_url(base: str, patient_id: str, study_uid: str) -> str:
    """Orthanc Explorer's page of one study."""
    return f"{base}/app/explorer.html#study?uuid={orthanc_id(patient_id, study_uid)}"


def study_links(
    studies: Iterable[Any],
    pseudonym: str | None = None,
    settings: Settings | None = None,
) -> list[OrthancLinks]:
    """Links of each crosswalk study: the intake side through the gateway's redirect, the research side
    directly into the research Orthanc Explorer (when ``pseudonym`` and ``settings`` are given)."""
    links = []
    for study in studies:
        research = f"/ui/admin/orthanc/research/studies/{study.id}"
        if pseudonym and settings and study.anon_study_uid:
            research = explorer_study_url(research_base(settings), pseudonym, study.anon_study_uid)
        links.append(
            OrthancLinks(
                study_id=study.id, intake=f"/ui/admin/orthanc/intake/studies/{study.id}", research=research
            )
        )
    return links
