"""/admin over the real crosswalk service: every PHI read and every write leaves an audit row."""

from __future__ import annotations

import pytest

from tests.integration.gateway.conftest import PHI_PEOPLE, Gateway

pytestmark = pytest.mark.integration


def _new_audit(gateway: Gateway, before: int) -> list[dict]:
    return gateway.audit_rows()[before:]


def test_search_person_detail_and_audit(gateway: Gateway) -> None:
    h = gateway.auth(gateway.admin)
    before = len(gateway.audit_rows())
    hits = gateway.client.post("/admin/persons/search", headers=h, json={"name": "jane doe"}).json()
    assert [hit["pseudonym"] for hit in hits] == [gateway.persons[0].pseudonym]
    person_id = hits[0]["person_id"]
    page = gateway.client.get(f"/admin/persons/{person_id}", headers=h).json()
    assert page["detail"]["person"]["pseudonym"] == gateway.persons[0].pseudonym
    assert {i["patient_name"] for i in page["detail"]["identities"]} == {"Doe^Jane^Quincy", "Doe^Jnae^Quincy"}
    rows = _new_audit(gateway, before)
    assert [r["action"] for r in rows] == ["crosswalk.search", "crosswalk.person.read"]
    assert all(r["actor"].startswith("token:") and r["role"] == "admin" and r["request_id"] for r in rows)
    assert "Doe" not in str([r["detail"] for r in rows])  # audit says what was read, never the PHI itself
    empty = gateway.client.post("/admin/persons/search", headers=h, json={})
    assert empty.status_code == 422


def test_review_queue_side_by_side_and_resolve(gateway: Gateway) -> None:
    h = gateway.auth(gateway.admin)
    flags = gateway.client.get("/admin/flags", headers=h).json()
    assert flags, "the typo of the first person raises a flag"
    flag = flags[0]
    detail = gateway.client.get(f"/admin/flags/{flag['id']}", headers=h).json()
    assert detail["identity"]["patient_name"] != detail["other_identity"]["patient_name"]
    assert detail["differing_fields"] == ["name"]
    before = len(gateway.audit_rows())
    resolved = gateway.client.post(
        f"/admin/flags/{flag['id']}/resolve", headers=h, json={"resolution": "typo confirmed with the clinic"}
    )
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    again = gateway.client.post(f"/admin/flags/{flag['id']}/resolve", headers=h, json={"resolution": "again"})
    assert again.status_code == 409
    assert [r["action"] for r in _new_audit(gateway, before)] == ["crosswalk.flag.resolve"]
    assert gateway.client.get("/admin/flags/999999", headers=h).status_code == 404


def test_notes_with_history(gateway: Gateway) -> None:
    h = gateway.auth(gateway.admin)
    person_id = gateway.persons[1].person_id
    before = len(gateway.audit_rows())
    note = gateway.client.post(
        f"/admin/persons/{person_id}/notes", headers=h, json={"body": "called the clinic"}
    )
    assert note.status_code == 201
    edited = gateway.client.put(
        f"/admin/notes/{note.json()['id']}",
        headers=h,
        json={"body": "called the clinic twice", "reason": "second call"},
    ).json()
    assert edited["version"] == 2 and [v["body"] for v in edited["history"]] == [
        "called the clinic",
        "called the clinic twice",
    ]
    actions = [r["action"] for r in _new_audit(gateway, before)]
    assert actions == ["crosswalk.note.add", "crosswalk.note.edit"]


def test_merge_split_correct_and_audit_query(gateway: Gateway) -> None:
    h = gateway.auth(gateway.admin)
    keep, other = gateway.persons[0].person_id, gateway.persons[2].person_id
    merged = gateway.client.post(
        "/admin/persons/merge",
        headers=h,
        json={"keep_person_id": keep, "merge_person_ids": [other], "reason": "same woman"},
    )
    assert merged.status_code == 200, merged.text
    identities = gateway.client.get(f"/admin/persons/{keep}", headers=h).json()["detail"]["identities"]
    moved = [i["id"] for i in identities if i["patient_id"] == PHI_PEOPLE[2][3]]
    split = gateway.client.post(
        f"/admin/persons/{keep}/split",
        headers=h,
        json={"identity_ids": moved, "reason": "not the same woman after all"},
    )
    assert split.status_code == 200 and split.json()["new_person_id"]
    corrected = gateway.client.post(
        f"/admin/identities/{moved[0]}/corrections",
        headers=h,
        json={"changes": {"birth_date": "19800102"}, "reason": "ID card"},
    )
    assert corrected.status_code == 200, corrected.text
    audit = gateway.client.get(
        "/admin/audit", headers=h, params={"target_type": "person", "limit": 50}
    ).json()
    assert audit and all(a["target_type"] == "person" for a in audit)
    rows = gateway.audit_rows()
    by_action = {r["action"]: r for r in rows}
    for action in ("crosswalk.merge", "crosswalk.split", "crosswalk.correct_phi", "crosswalk.audit.query"):
        assert by_action[action]["actor"].startswith("token:") and by_action[action]["role"] == "admin"


def test_orthanc_links_redirect_to_both_explorers(gateway: Gateway) -> None:
    from gateway.orthanc_links import orthanc_id

    h = gateway.auth(gateway.admin)
    person = gateway.persons[1]
    page = gateway.client.get(f"/admin/persons/{person.person_id}", headers=h).json()
    (study,) = page["detail"]["studies"]
    (links,) = page["links"]
    assert links["research"].endswith(orthanc_id(person.pseudonym, study["anon_study_uid"]))
    gateway.client.post("/login", data={"token": gateway.admin})
    intake = gateway.client.get(links["intake"], follow_redirects=False)
    assert intake.status_code == 303
    assert intake.headers["location"].endswith(orthanc_id(PHI_PEOPLE[1][3], study["original_study_uid"]))
    assert PHI_PEOPLE[1][3] not in links["intake"]  # the page link carries a surrogate id only
    assert gateway.audit_rows("gateway.orthanc.intake.open")[-1]["target_id"] == str(study["id"])


def test_console_phi_correction_keeps_the_original(gateway: Gateway) -> None:
    person = gateway.persons[2]
    gateway.client.post("/login", data={"token": gateway.admin})
    done = gateway.client.post(
        f"/ui/admin/persons/{person.person_id}/corrections",
        data={
            "identity_id": person.identity_id,
            "field": "birth_date",
            "value": "19800110",
            "reason": "ID card",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith("changed=correction")
    page = gateway.client.get(done.headers["location"]).text
    assert "19800110" in page and "19800101" in page  # the correction and the identity as it arrived
    assert gateway.audit_rows("crosswalk.correct_phi")[-1]["role"] == "admin"
    refused = gateway.client.post(
        f"/ui/admin/persons/{person.person_id}/corrections",
        data={"identity_id": person.identity_id, "field": "alias", "value": "x", "reason": "no"},
    )
    assert refused.status_code == 422


def test_console_merge_asks_for_confirmation_first(gateway: Gateway) -> None:
    keep, other = gateway.persons[0].person_id, gateway.persons[2].person_id
    gateway.client.post("/login", data={"token": gateway.admin})
    asked = gateway.client.post(
        f"/ui/admin/persons/{keep}/merge", data={"merge_person_ids": other, "reason": "same woman"}
    )
    assert asked.status_code == 200 and "Confirm merge" in asked.text and other in asked.text
    assert gateway.audit_rows("crosswalk.merge") == []
    done = gateway.client.post(
        f"/ui/admin/persons/{keep}/merge",
        data={"merge_person_id": other, "reason": "same woman", "confirmed": "yes"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith("changed=merge")
    assert len(gateway.audit_rows("crosswalk.merge")) == 1
    page = gateway.client.get(done.headers["location"]).text
    assert "Moe^Mary" in page and "re-publishing" in page
