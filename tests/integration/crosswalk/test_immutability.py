"""Scan identities, audit rows, note versions and change records cannot be changed or deleted; links can
only be closed. Enforced by triggers, so no code path (not even raw SQL) can rewrite history."""

from __future__ import annotations

import psycopg
import pytest

from adapters.db.crosswalk import CrosswalkService
from tmi.crosswalk.model import Actor
from tmi.ports import PatientPHI

pytestmark = pytest.mark.integration
PHI = PatientPHI(patient_id="1", issuer="A", name="Doe^Jane", birth_date="19700101", sex="F")


@pytest.fixture
def seeded(svc: CrosswalkService, admin: Actor) -> CrosswalkService:
    r = svc.resolve(PHI)
    note = svc.add_note(r.person_id, "allergic to contrast", actor=admin)
    svc.edit_note(note.id, "allergic to iodinated contrast", actor=admin)
    svc.correct_phi(r.identity_id, {"name": "Doe^Janet"}, actor=admin, reason="typo at the modality")
    return svc


@pytest.mark.parametrize("statement", [
    "UPDATE scan_identity SET patient_name = 'X'",
    "DELETE FROM scan_identity",
    "TRUNCATE scan_identity CASCADE",
    "UPDATE audit_log SET actor = 'mallory'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "UPDATE note_version SET body = 'rewritten'",
    "DELETE FROM note_version",
    "UPDATE person_change SET reason = 'x'",
    "DELETE FROM person_change",
    "DELETE FROM identity_link",
    "UPDATE identity_link SET person_id = gen_random_uuid()",
    "UPDATE identity_link SET method = 'admin', valid_to = now()",
])
def test_history_cannot_be_rewritten(seeded: CrosswalkService, cw_dsn: str, statement: str) -> None:
    with psycopg.connect(cw_dsn) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match=r"not allowed|may only close"):
            conn.execute(statement)


def test_rows_survive_and_links_can_be_closed(seeded: CrosswalkService, cw_dsn: str) -> None:
    with psycopg.connect(cw_dsn) as conn:
        assert conn.execute("SELECT patient_name FROM scan_identity ORDER BY id").fetchall() == [
            ("Doe^Jane",), ("Doe^Janet",)]
        closed = conn.execute("UPDATE identity_link SET valid_to = now(), closed_by = 'x' "
                              "WHERE identity_id = 1").rowcount
        assert closed == 1
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute("UPDATE identity_link SET valid_to = now() WHERE identity_id = 1")
