"""Every matching rule and the normalization cases, through the real service on real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from adapters.db.crosswalk import CrosswalkService, PgPseudonymProvider
from adapters.db.migrate import migrate
from tmi.crosswalk.model import Actor
from tmi.crosswalk.pseudonyms import PSEUDONYM_RE
from tmi.ports import PatientPHI, PseudonymProvider

pytestmark = pytest.mark.integration

JOHN = PatientPHI(patient_id="123", issuer="CLINIC-A", name="Doe^John", birth_date="19700101", sex="M",
                  institution="General Hospital", calling_aet="CT01")


def phi(**changes: object) -> PatientPHI:
    values = {"patient_id": "123", "issuer": "CLINIC-A", "name": "Doe^John", "birth_date": "19700101",
              "sex": "M"}
    values.update(changes)
    return PatientPHI(**values)  # type: ignore[arg-type]


def open_flags(dsn: str) -> list[tuple[str, str, list[str]]]:
    with psycopg.connect(dsn) as conn:
        return [(r[0], str(r[1]), r[2]) for r in conn.execute(
            "SELECT kind, person_id, evidence->'differing_fields' FROM review_flag WHERE status = 'open' "
            "ORDER BY id").fetchall()]


def test_migrate_is_idempotent(cw_dsn: str) -> None:
    assert migrate(cw_dsn) == []


def test_new_patient_gets_random_pseudonym_and_alias(svc: CrosswalkService) -> None:
    r = svc.resolve(JOHN)
    assert r.created_person and PSEUDONYM_RE.match(r.pseudonym)
    assert r.alias and r.flags == ()
    other = svc.resolve(phi(patient_id="456", name="Roe^Mary", birth_date="19800202", sex="F"))
    assert other.person_id != r.person_id and other.pseudonym != r.pseudonym


def test_identical_arrival_shares_the_identity(svc: CrosswalkService, cw_dsn: str) -> None:
    first = svc.resolve(JOHN)
    again = svc.resolve(JOHN)
    assert (again.person_id, again.identity_id, again.created_person) == (first.person_id, first.identity_id,
                                                                          False)
    with psycopg.connect(cw_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM scan_identity").fetchone() == (1,)


def test_rule1_same_key_same_normalized_phi(svc: CrosswalkService, cw_dsn: str) -> None:
    first = svc.resolve(JOHN)
    for variant in (phi(name="DOE^JOHN^^^"), phi(name="john^doe"), phi(issuer=" clinic-a "),
                    phi(name="Doe John", birth_date="1970-01-01", sex="m"), phi(name="Dóe^Jöhn")):
        r = svc.resolve(variant)
        assert (r.person_id, r.flags, r.rule) == (first.person_id, (), "rule1_same_key_same_phi")
    with psycopg.connect(cw_dsn) as conn:
        methods = {row[0] for row in conn.execute("SELECT method FROM identity_link").fetchall()}
    assert methods == {"exact"}


def test_rule2_one_field_differs_links_and_flags(svc: CrosswalkService, cw_dsn: str) -> None:
    first = svc.resolve(JOHN)
    r = svc.resolve(phi(birth_date="19700110"))
    assert r.person_id == first.person_id and r.flags == ("possible_typo",)
    assert open_flags(cw_dsn) == [("possible_typo", first.person_id, ["birth_date"])]


def test_rule3_two_fields_differ_new_person_id_collision(svc: CrosswalkService, cw_dsn: str) -> None:
    first = svc.resolve(JOHN)
    r = svc.resolve(phi(name="Roe^Mary", sex="F"))
    assert r.person_id != first.person_id and r.created_person and r.flags == ("id_collision",)
    assert open_flags(cw_dsn) == [("id_collision", r.person_id, ["name", "sex"])]
    # Mary comes back: linked to Mary, not to John, no new flag.
    again = svc.resolve(phi(name="ROE^MARY", sex="F", calling_aet="MR2"))
    assert again.person_id == r.person_id and again.flags == ()


def test_clinics_reuse_ids_key_is_never_patient_id_alone(svc: CrosswalkService) -> None:
    a = svc.resolve(JOHN)
    b = svc.resolve(phi(issuer="CLINIC-B", name="Roe^Mary", birth_date="19800202", sex="F"))
    assert a.person_id != b.person_id and b.flags == () and b.created_person


def test_rule4_other_key_same_phi_new_person_flagged(svc: CrosswalkService, cw_dsn: str) -> None:
    a = svc.resolve(JOHN)
    b = svc.resolve(phi(issuer="CLINIC-B", patient_id="B-77", name="JOHN^DOE"))
    assert b.person_id != a.person_id and b.flags == ("possible_same_person",)
    with psycopg.connect(cw_dsn) as conn:
        row = conn.execute("SELECT other_person_id::text FROM review_flag").fetchone()
    assert row == (a.person_id,)


def test_rule4_on_present_fields_for_a_nameless_arrival_at_another_clinic(svc: CrosswalkService,
                                                                         cw_dsn: str) -> None:
    """The name is missing: birth date + sex agree with a person under another key -> flagged, not linked
    (the candidates come from the birth-date search, which used to need a name)."""
    a = svc.resolve(JOHN)
    b = svc.resolve(phi(issuer="CLINIC-B", patient_id="B-78", name=None))
    assert b.person_id != a.person_id and b.created_person and b.flags == ("possible_same_person",)
    with psycopg.connect(cw_dsn) as conn:
        row = conn.execute("SELECT other_person_id::text, evidence->>'rule' FROM review_flag").fetchone()
    assert row == (a.person_id, "rule4_same_present_phi_other_key")


def test_rule4_policy_link_and_flag(cw_dsn: str) -> None:
    with CrosswalkService.connect(cw_dsn) as base:
        rules = base.rules.with_changes(possible_same_person="link_and_flag")
    with CrosswalkService.connect(cw_dsn, rules=rules) as svc:
        a = svc.resolve(JOHN)
        b = svc.resolve(phi(issuer="CLINIC-B", patient_id="B-77"))
        assert b.person_id == a.person_id and b.flags == ("possible_same_person",)
        assert b.rule == "rule4_link_and_flag"


def test_fuzzy_only_flags(svc: CrosswalkService) -> None:
    a = svc.resolve(JOHN)
    b = svc.resolve(phi(issuer="CLINIC-B", patient_id="B-1", name="Doe^Jon"))
    assert b.person_id != a.person_id and b.flags == ("similar_person",)
    c = svc.resolve(phi(issuer="CLINIC-C", patient_id="C-1", birth_date="19700110"))
    assert c.person_id not in (a.person_id, b.person_id) and "similar_person" in c.flags


def test_a_mistyped_name_without_birth_date_at_a_new_clinic_is_flagged(svc: CrosswalkService,
                                                                       cw_dsn: str) -> None:
    """No exact field leads to the earlier identity (new key, name mistyped, no birth date): the trigram
    search over normalized names (migration 0003) finds it, and the similarity is only flagged."""
    anna = svc.resolve(PatientPHI(patient_id="A-7", issuer="CLINIC-A", name="Linmannti^Anna",
                                  birth_date="19610315", sex="F"))
    for n in range(30):  # other patients, some of them with similar-looking names
        svc.resolve(PatientPHI(patient_id=f"A-{100 + n}", issuer="CLINIC-A", name=f"Lin{n:02d}berg^Anna",
                               birth_date=f"1960{n % 12 + 1:02d}15", sex="F"))
    typo = svc.resolve(PatientPHI(patient_id="B-3", issuer="CLINIC-B", name="Linmanti^Anna", sex="F"))
    assert typo.created_person and typo.person_id != anna.person_id
    assert typo.flags == ("similar_person",)
    with psycopg.connect(cw_dsn) as conn:
        (other_person, evidence), = conn.execute(
            "SELECT other_person_id::text, evidence FROM review_flag WHERE identity_id = %s",
            (typo.identity_id,)).fetchall()
    assert other_person == anna.person_id
    assert evidence["birth_date"] == "missing" and evidence["name_similarity"] >= 0.9
    # With a birth date, a mistyped name is searched by that birth date, not by name: another birth date
    # leaves it unflagged (the name alone is not evidence).
    dated = svc.resolve(PatientPHI(patient_id="C-3", issuer="CLINIC-C", name="Linmanni^Anna",
                                   birth_date="19990101", sex="F"))
    assert dated.flags == ()
    # A dissimilar name without birth date: nothing.
    stranger = svc.resolve(PatientPHI(patient_id="D-3", issuer="CLINIC-D", name="Okafor^Grace", sex="F"))
    assert stranger.flags == ()


def test_the_pool_sets_the_trigram_threshold_of_the_rules(svc: CrosswalkService) -> None:
    with svc._conn() as conn:
        (value,) = conn.execute("SHOW pg_trgm.similarity_threshold").fetchone() or (None,)
    assert float(value) == svc.rules.name_search_threshold


def test_rule5_missing_fields(svc: CrosswalkService) -> None:
    a = svc.resolve(JOHN)
    no_birth = svc.resolve(phi(birth_date=None))
    assert no_birth.person_id == a.person_id and no_birth.flags == ()
    only_id = svc.resolve(phi(name=None, birth_date=None, sex=None))
    assert only_id.person_id == a.person_id and only_id.flags == ("incomplete_phi",)
    sparse_new = svc.resolve(PatientPHI(patient_id="9", issuer="CLINIC-A", sex="F"))
    assert sparse_new.created_person and sparse_new.flags == ("incomplete_phi",)


def test_no_clinic_means_no_key(svc: CrosswalkService) -> None:
    a = svc.resolve(phi(issuer=None))
    again = svc.resolve(phi(issuer=None))
    assert again.person_id == a.person_id  # identical arrival
    other = svc.resolve(phi(issuer=None, name="DOE^JOHN"))  # same ID, no clinic: rule 4 only
    assert other.person_id != a.person_id and other.flags == ("possible_same_person",)


def test_ideographic_and_phonetic_groups(svc: CrosswalkService) -> None:
    full = svc.resolve(phi(name="Yamada^Tarou=山田^太郎=やまだ^たろう"))
    assert svc.resolve(phi(name="=山田^太郎")).person_id == full.person_id
    assert svc.resolve(phi(name="YAMADA^TAROU")).person_id == full.person_id
    assert svc.resolve(phi(name="==ヤマダ^タロウ")).person_id == full.person_id


def test_rule6_weeks_apart_out_of_order(svc: CrosswalkService) -> None:
    later = svc.resolve(phi(calling_aet="CT01"))
    rec1 = svc.record_instance(person_id=later.person_id, identity_id=later.identity_id,
                               original_study_uid="1.2.3", anon_study_uid="2.25.100",
                               original_series_uid="1.2.3.1", anon_series_uid="2.25.101",
                               original_sop_uid="1.2.3.1.1", anon_sop_uid="2.25.102", study_date="20260301",
                               accession="ACC1", intake_key="incoming/a.dcm")
    # Weeks later an older study's images arrive, then more images of the first study.
    older = svc.resolve(phi(calling_aet="MR02", name="DOE^JOHN"))
    assert older.person_id == later.person_id and older.pseudonym == later.pseudonym
    svc.record_instance(person_id=older.person_id, identity_id=older.identity_id, original_study_uid="1.2.9",
                        anon_study_uid="2.25.900", original_series_uid="1.2.9.1", anon_series_uid="2.25.901",
                        original_sop_uid="1.2.9.1.1", anon_sop_uid="2.25.902", study_date="20260101")
    rec2 = svc.record_instance(person_id=later.person_id, identity_id=later.identity_id,
                               original_study_uid="1.2.3", anon_study_uid="2.25.999",
                               original_series_uid="1.2.3.2", anon_series_uid="2.25.201",
                               original_sop_uid="1.2.3.2.1", anon_sop_uid="2.25.202")
    assert rec2.anon_study_uid == rec1.anon_study_uid == "2.25.100"
    assert rec2.accession == "ACC1"
    # Re-recording an instance updates its state, never duplicates it.
    rec3 = svc.record_instance(person_id=later.person_id, identity_id=later.identity_id,
                               original_study_uid="1.2.3", anon_study_uid="2.25.100",
                               original_series_uid="1.2.3.1", anon_series_uid="2.25.101",
                               original_sop_uid="1.2.3.1.1", anon_sop_uid="2.25.102", state="published",
                               research_key="TMI-X/2.25.100/2.25.101/2.25.102.dcm")
    assert rec3.id == rec1.id and rec3.state == "published" and rec3.intake_key == "incoming/a.dcm"


def test_pg_pseudonym_provider_implements_the_port(svc: CrosswalkService) -> None:
    provider = PgPseudonymProvider(svc, actor=Actor("pipeline", "service", "req-9"), source="intake:x")
    assert isinstance(provider, PseudonymProvider)
    a = provider.assign(JOHN)
    b = provider.assign(phi(birth_date="19700111"))
    assert a.pseudonym == b.pseudonym and a.person_id == b.person_id
    assert b.flags == ("possible_typo",) and a.alias == b.alias


def test_no_patient_identity_is_poison(svc: CrosswalkService, cw_dsn: str) -> None:
    from tmi.errors import PoisonInputError

    for empty in (PatientPHI(), PatientPHI(issuer="A", sex="F", calling_aet="CT1"), PatientPHI(name="^^")):
        with pytest.raises(PoisonInputError) as info:
            svc.resolve(empty)
        assert info.value.reason == "crosswalk.no_patient_identity"
    with psycopg.connect(cw_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM person").fetchone() == (0,)


def test_from_settings(cw_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tmi.settings import get_settings

    monkeypatch.setenv("TMI_DATABASE_URL", cw_dsn)
    get_settings.cache_clear()
    try:
        with CrosswalkService.from_settings() as svc:
            assert svc.resolve(JOHN).created_person
    finally:
        get_settings.cache_clear()


def test_new_person_alias_avoids_the_patients_own_name(svc: CrosswalkService, cw_dsn: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The alias is drawn without PHI; when it happens to be the patient's own given name, the crosswalk
    draws again avoiding it, so the stored alias is the one the de-identifier publishes."""
    import adapters.db.crosswalk as crosswalk_module
    from tmi.crosswalk.pseudonyms import alias_for

    pseudonym = "TMI-0123456789"
    monkeypatch.setattr(crosswalk_module, "new_pseudonym", lambda: pseudonym)
    drawn = alias_for(pseudonym, "F").partition("^")[2]
    r = svc.resolve(phi(name=f"Quarrington^{drawn}", sex="F", patient_id="AL-1"))
    assert r.created_person and r.pseudonym == pseudonym
    assert r.alias.partition("^")[2] != drawn
    assert r.alias == alias_for(pseudonym, "F", avoid={"QUARRINGTON", drawn.upper()})
    with psycopg.connect(cw_dsn) as conn:
        stored = conn.execute("SELECT alias FROM person WHERE pseudonym = %s", (pseudonym,)).fetchone()
    assert stored == (r.alias,)
