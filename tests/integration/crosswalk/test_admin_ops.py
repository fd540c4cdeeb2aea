"""Confirm / merge / split with republish items, PHI corrections, notes with versions, flags, search,
person detail and the audit trail, through the real service on real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg
import pytest

from adapters.db.crosswalk import CrosswalkService, Resolution
from tmi.crosswalk.model import Actor, InvalidChangeError, UnknownRecordError
from tmi.ports import PatientPHI

pytestmark = pytest.mark.integration

JOHN_A = PatientPHI(patient_id="123", issuer="CLINIC-A", name="Doe^John", birth_date="19700101", sex="M")
JOHN_B = PatientPHI(patient_id="B-9", issuer="CLINIC-B", name="DOE^JOHN", birth_date="19700101", sex="M")


def add_instances(svc: CrosswalkService, r: Resolution, study: str, n: int) -> list[int]:
    ids = []
    for i in range(n):
        rec = svc.record_instance(
            person_id=r.person_id, identity_id=r.identity_id, original_study_uid=f"1.{study}",
            anon_study_uid=f"2.25.{study}", original_series_uid=f"1.{study}.1",
            anon_series_uid=f"2.25.{study}1",
            original_sop_uid=f"1.{study}.1.{i}", anon_sop_uid=f"2.25.{study}1{i}", state="published",
            research_key=f"{r.pseudonym}/x/{i}.dcm", intake_key=f"incoming/{study}-{i}.dcm")
        ids.append(rec.id)
    return ids


def test_merge_relinks_moves_and_emits_republish_items(svc: CrosswalkService, admin: Actor, cw_dsn: str,
                                                       ) -> None:
    a = svc.resolve(JOHN_A)
    b = svc.resolve(JOHN_B)
    assert b.flags == ("possible_same_person",)
    add_instances(svc, a, "10", 2)
    b_instances = add_instances(svc, b, "20", 3)
    svc.add_dicom_notes(b.person_id, [("PatientComments", "claustrophobic")], actor=admin)

    result = svc.merge(a.person_id, [b.person_id], actor=admin, reason="same patient, two clinics")
    assert result.republish_items == 3 and result.identity_ids == (b.identity_id,)

    detail = svc.person_detail(a.person_id, actor=admin)
    assert {i.id for i in detail.identities} == {a.identity_id, b.identity_id}
    assert sum(s.instances for s in detail.studies) == 5
    assert [n.body for n in detail.notes] == ["claustrophobic"]
    assert all(f.status == "resolved" and f.resolution == "merged" for f in detail.flags)
    # History: the old link is closed, not deleted; the new one is an admin link with the change id.
    b_links = [lk for lk in detail.links if lk.identity_id == b.identity_id]
    assert [(lk.person_id, lk.valid_to is None, lk.method) for lk in b_links] == [
        (b.person_id, False, "exact"), (a.person_id, True, "admin")]
    assert b_links[1].change_id == result.change_id
    merged = svc.person_detail(b.person_id, actor=admin).person
    assert (merged.status, merged.merged_into) == ("merged", a.person_id)

    # The merged person's PHI now resolves to the kept person.
    assert svc.resolve(JOHN_B).person_id == a.person_id

    items = svc.claim_republish_items(10)
    assert sorted(i.instance_id for i in items) == sorted(b_instances)
    assert {(i.old_pseudonym, i.new_pseudonym, i.new_person_id, i.reason) for i in items} == {
        (b.pseudonym, a.pseudonym, a.person_id, "merge")}
    assert svc.claim_republish_items(10) == []  # claimed items are not handed out twice
    for item in items:
        assert svc.complete_republish_item(item.id, research_key=f"{a.pseudonym}/{item.instance_id}.dcm")
        assert not svc.complete_republish_item(item.id)
    with psycopg.connect(cw_dsn) as conn:
        states = conn.execute("SELECT DISTINCT state FROM instance").fetchall()
    assert states == [("published",)]
    with pytest.raises(InvalidChangeError):
        svc.merge(a.person_id, [b.person_id], actor=admin, reason="again")


def test_claims_are_disjoint_across_workers(svc: CrosswalkService, admin: Actor, cw_dsn: str) -> None:
    a = svc.resolve(JOHN_A)
    b = svc.resolve(JOHN_B)
    add_instances(svc, b, "30", 20)
    svc.merge(a.person_id, [b.person_id], actor=admin, reason="same patient")
    services = [CrosswalkService.connect(cw_dsn, max_size=1) for _ in range(4)]
    barrier = threading.Barrier(4)
    claimed: list[list[int]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        barrier.wait(timeout=30)
        while batch := services[i].claim_republish_items(3):
            claimed[i].extend(item.id for item in batch)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in services:
        s.close()
    everything = [i for c in claimed for i in c]
    assert len(everything) == 20 and len(set(everything)) == 20


def test_stale_claims_are_handed_out_again(svc: CrosswalkService, admin: Actor) -> None:
    a = svc.resolve(JOHN_A)
    b = svc.resolve(JOHN_B)
    add_instances(svc, b, "40", 1)
    svc.merge(a.person_id, [b.person_id], actor=admin, reason="same patient")
    first = svc.claim_republish_items(5)
    assert len(first) == 1 and svc.claim_republish_items(5, stale_after_s=3600) == []
    again = svc.claim_republish_items(5, stale_after_s=0)
    assert [i.id for i in again] == [first[0].id] and again[0].attempts == 2


def test_split_moves_identities_and_instances_to_a_new_person(svc: CrosswalkService, admin: Actor) -> None:
    a = svc.resolve(JOHN_A)
    wrong = svc.resolve(JOHN_A.__class__(patient_id="123", issuer="CLINIC-A", name="Doe^Jon",
                                         birth_date="19700101", sex="M"))  # linked as a possible typo
    assert wrong.person_id == a.person_id and wrong.flags == ("possible_typo",)
    add_instances(svc, a, "50", 2)
    moved = add_instances(svc, wrong, "60", 2)
    flag = svc.list_flags(actor=admin, kind="possible_typo")[0]

    result = svc.split(a.person_id, [wrong.identity_id], actor=admin, reason="different patients, twins")
    assert result.new_person_id and result.republish_items == 2
    svc.resolve_flag(flag.id, "split: twins", actor=admin)
    new_detail = svc.person_detail(result.new_person_id, actor=admin)
    assert [i.id for i in new_detail.identities] == [wrong.identity_id]
    assert new_detail.person.pseudonym != a.pseudonym
    assert [s.instances for s in new_detail.studies] == [2]
    items = svc.claim_republish_items(10)
    assert sorted(i.instance_id for i in items) == sorted(moved)
    assert {(i.old_pseudonym, i.new_pseudonym) for i in items} == {(a.pseudonym, new_detail.person.pseudonym)}
    # The split identity's PHI now resolves to the new person; the original stays.
    assert svc.resolve(wrong_phi()).person_id == result.new_person_id
    assert svc.resolve(JOHN_A).person_id == a.person_id
    with pytest.raises(InvalidChangeError):
        svc.split(a.person_id, [a.identity_id], actor=admin, reason="would leave nothing")
    with pytest.raises(InvalidChangeError):
        svc.split(a.person_id, [wrong.identity_id], actor=admin, reason="not its identity any more")


def wrong_phi() -> PatientPHI:
    return PatientPHI(patient_id="123", issuer="CLINIC-A", name="Doe^Jon", birth_date="19700101", sex="M")


def test_confirm_upgrades_the_link_and_resolves_the_flag(svc: CrosswalkService, admin: Actor) -> None:
    a = svc.resolve(JOHN_A)
    typo = svc.resolve(wrong_phi())
    flag = svc.list_flags(actor=admin)[0]
    result = svc.confirm(typo.identity_id, actor=admin, reason="same patient, name keyed wrong",
                         flag_id=flag.id)
    assert result.person_ids == (a.person_id,)
    identity = svc.identity(typo.identity_id, actor=admin)
    assert (identity.link_method, identity.link_confidence, identity.person_id) == ("admin", 1.0, a.person_id)
    assert svc.list_flags(actor=admin) == []
    with pytest.raises(InvalidChangeError):
        svc.resolve_flag(flag.id, "again", actor=admin)


def test_correct_phi_is_a_new_record(svc: CrosswalkService, admin: Actor, cw_dsn: str) -> None:
    a = svc.resolve(JOHN_A)
    add_instances(svc, a, "70", 2)
    change = svc.correct_phi(a.identity_id, {"name": "Doe^Johnathan", "sex": "F"}, actor=admin,
                             reason="registration error, confirmed with the patient")
    assert change.new_identity_id is not None and change.republish_items == 2
    original = svc.identity(a.identity_id, actor=admin)
    corrected = svc.identity(change.new_identity_id, actor=admin)
    assert (original.patient_name, original.superseded_by) == ("Doe^John", change.new_identity_id)
    assert (corrected.kind, corrected.corrects_id, corrected.patient_name, corrected.sex) == (
        "correction", a.identity_id, "Doe^Johnathan", "F")
    assert corrected.reason and corrected.created_by == "alice"
    person = svc.person_detail(a.person_id, actor=admin).person
    assert person.sex == "F" and person.alias != a.alias and person.pseudonym == a.pseudonym
    # The arrival as it was still maps to the person; new arrivals match the corrected PHI.
    assert svc.resolve(JOHN_A).person_id == a.person_id
    r = svc.resolve(PatientPHI(patient_id="123", issuer="CLINIC-A", name="DOE^JOHNATHAN",
                               birth_date="19700101", sex="F"))
    assert (r.person_id, r.flags) == (a.person_id, ())
    with pytest.raises(InvalidChangeError):
        svc.correct_phi(a.identity_id, {"name": "x"}, actor=admin, reason="correct the old one")
    with pytest.raises(InvalidChangeError):
        svc.correct_phi(change.new_identity_id, {"ssn": "x"}, actor=admin, reason="unknown field")
    with pytest.raises(InvalidChangeError):
        svc.correct_phi(change.new_identity_id, {"name": "x"}, actor=admin, reason=" ")


def test_notes_dedupe_and_versions(svc: CrosswalkService, admin: Actor) -> None:
    a = svc.resolve(JOHN_A)
    assert svc.add_dicom_notes(a.person_id, [("PatientComments", "pacemaker"), "  ", "pacemaker"]) == 1
    assert svc.add_dicom_notes(a.person_id, [("AdditionalPatientHistory", "pacemaker ")]) == 0
    note = svc.add_note(a.person_id, "call before scheduling", actor=admin)
    edited = svc.edit_note(note.id, "call the ward before scheduling", actor=admin, reason="clarity")
    edited = svc.edit_note(note.id, "call ward 3 before scheduling", actor=Actor("bob", "admin", "r2"))
    assert edited.version == 3 and edited.body == "call ward 3 before scheduling"
    assert [v.body for v in edited.history] == ["call before scheduling", "call the ward before scheduling",
                                                "call ward 3 before scheduling"]
    assert [v.edited_by for v in edited.history] == ["alice", "alice", "bob"]
    detail = svc.person_detail(a.person_id, actor=admin)
    assert [(n.source, n.body) for n in detail.notes] == [("dicom", "pacemaker"),
                                                         ("admin", "call ward 3 before scheduling")]
    with pytest.raises(UnknownRecordError):
        svc.edit_note(99999, "x", actor=admin)


def test_flag_detail_side_by_side(svc: CrosswalkService, admin: Actor) -> None:
    svc.resolve(JOHN_A)
    svc.resolve(PatientPHI(patient_id="123", issuer="CLINIC-A", name="Doe^John", birth_date="19700111",
                           sex="M"))
    flag = svc.list_flags(actor=admin)[0]
    detail = svc.flag_detail(flag.id, actor=admin)
    assert detail.differing_fields == ("birth_date",)
    assert (detail.identity.birth_date, detail.other_identity and detail.other_identity.birth_date) == (
        "19700111", "19700101")
    svc.resolve_flag(flag.id, "false alarm: verified", actor=admin, dismiss=True)
    assert svc.list_flags(actor=admin, status="dismissed")[0].resolved_by == "alice"


def test_search_persons(svc: CrosswalkService, admin: Actor) -> None:
    a = svc.resolve(JOHN_A)
    b = svc.resolve(PatientPHI(patient_id="77", issuer="CLINIC-B", name="Müller^Anna", birth_date="19811111",
                               sex="F"))
    assert [h.person_id for h in svc.search_persons(actor=admin, name="anna MULLER")] == [b.person_id]
    assert [h.person_id for h in svc.search_persons(actor=admin, birth_date="1970-01-01")] == [a.person_id]
    assert [h.person_id for h in svc.search_persons(actor=admin, patient_id="77")] == [b.person_id]
    assert [h.person_id for h in svc.search_persons(actor=admin, clinic="clinic-a")] == [a.person_id]
    assert svc.search_persons(actor=admin, name="doe", clinic="clinic-b") == []
    with pytest.raises(InvalidChangeError):
        svc.search_persons(actor=admin)
    with pytest.raises(UnknownRecordError):
        svc.person_detail("not-a-uuid", actor=admin)


def test_every_read_and_write_is_audited_without_phi(svc: CrosswalkService, admin: Actor, cw_dsn: str,
                                                     ) -> None:
    pipeline = Actor("worker-1", "service", "req-pipe")
    a = svc.resolve(JOHN_A, actor=pipeline, source="intake:incoming/x.dcm")
    svc.search_persons(actor=admin, name="Doe John")
    svc.person_detail(a.person_id, actor=admin)
    note = svc.add_note(a.person_id, "private text", actor=admin)
    svc.edit_note(note.id, "private text 2", actor=admin)
    svc.correct_phi(a.identity_id, {"birth_date": "19700102"}, actor=admin, reason="typo")
    svc.list_flags(actor=admin)
    entries = svc.audit_query(actor=admin, limit=50)
    actions = [e.action for e in reversed(entries)]
    assert actions == ["crosswalk.resolve", "crosswalk.search", "crosswalk.person.read", "crosswalk.note.add",
                       "crosswalk.note.edit", "crosswalk.correct_phi", "crosswalk.flags.list"]
    resolve_row = entries[-1]
    assert (resolve_row.actor, resolve_row.role, resolve_row.request_id) == (
        "worker-1", "service", "req-pipe")
    assert all(e.request_id == "req-test-1" for e in entries[:-1])
    # The audit query itself was audited; filters work.
    assert svc.audit_query(actor=admin, action="crosswalk.audit.query")[0].actor == "alice"
    assert [e.action for e in svc.audit_query(actor=admin, target_id=a.person_id)][-1] == "crosswalk.resolve"
    with psycopg.connect(cw_dsn) as conn:
        dump = str(conn.execute("SELECT array_agg(detail::text || coalesce(target_id, '')) FROM audit_log")
                   .fetchone())
    for value in ("Doe", "John", "19700101", "19700102", "CLINIC-A", "private text"):
        assert value.casefold() not in dump.casefold()


def test_instance_lookups_and_states(svc: CrosswalkService, admin: Actor) -> None:
    a = svc.resolve(JOHN_A)
    [instance_id] = add_instances(svc, a, "80", 1)
    rec = svc.set_instance_state(instance_id, "quarantined", detail="pixels.burned_in_annotation")
    assert (rec.state, rec.state_detail) == ("quarantined", "pixels.burned_in_annotation")
    found = svc.instance_by_original_uid("1.80.1.0", actor=admin)
    assert found is not None and found.id == instance_id and found.anon_study_uid == "2.25.80"
    assert svc.instance_by_original_uid("9.9.9", actor=admin) is None
    with pytest.raises(InvalidChangeError):
        svc.set_instance_state(instance_id, "lost")
    with pytest.raises(UnknownRecordError):
        svc.set_instance_state(424242, "published")
    person = svc.person_by_pseudonym(a.pseudonym, actor=admin)
    assert person.id == a.person_id
    with pytest.raises(UnknownRecordError):
        svc.person_by_pseudonym("TMI-0000000000", actor=admin)
    note = svc.add_note(a.person_id, "first", actor=admin)
    assert svc.note(note.id, actor=admin).history[0].body == "first"
    actions = {e.action for e in svc.audit_query(actor=admin, limit=100)}
    assert {"crosswalk.instance.read", "crosswalk.person.by_pseudonym", "crosswalk.note.read",
            "crosswalk.instance.state"} <= actions
