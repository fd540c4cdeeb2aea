"""Ports: the interfaces between the pure core and the outside world, as ``typing.Protocol``.

Each port has a real adapter (PostgreSQL, S3, Orthanc) outside ``tmi`` and a small local implementation
for unit tests. The core only ever sees these shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class PatientPHI:
    """The identifying values of one incoming instance, exactly as they arrived (confidential).

    ``name`` is the raw PN value with all component groups (alphabetic=ideographic=phonetic);
    ``issuer`` is IssuerOfPatientID; ``institution`` and ``calling_aet`` identify the sending clinic when
    the issuer is missing. Empty values are ``None``: an absent field is neither a match nor a mismatch.
    """

    patient_id: str | None = None
    issuer: str | None = None
    name: str | None = None
    birth_date: str | None = None  # DICOM DA, YYYYMMDD
    sex: str | None = None  # M / F / O
    other_ids: tuple[str, ...] = ()
    institution: str | None = None
    calling_aet: str | None = None


@dataclass(frozen=True, slots=True)
class PseudonymAssignment:
    """What the research side may know about a patient: a pseudonym and a sex-consistent alias.

    ``person_id`` is the crosswalk's random GUID when a crosswalk assigned it (``None`` offline);
    ``flags`` names review flags raised while resolving (e.g. ``"possible_typo"``), for reporting only.
    """

    pseudonym: str
    alias: str
    person_id: str | None = None
    flags: tuple[str, ...] = field(default=())


@runtime_checkable
class PseudonymProvider(Protocol):
    """Maps an incoming patient's PHI to a stable pseudonym and alias.

    Offline mode derives them from the de-identification key (``tmi.deid.pseudonyms``); the crosswalk
    provides a PostgreSQL-backed implementation that applies the matching rules.
    """

    def assign(self, phi: PatientPHI) -> PseudonymAssignment:
        """Return the pseudonym assignment for ``phi``; the same patient always gets the same one."""
        ...
