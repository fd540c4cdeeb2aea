"""The pure matching decision: every rule, on hand-made candidates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tmi.crosswalk.decide import Candidate, compare, decide
from tmi.crosswalk.normalize import normalize_phi
from tmi.crosswalk.rules import DEFAULT_RULES_PATH, MatchRules, load_rules
from tmi.errors import ConfigurationError
from tmi.ports import PatientPHI

RULES = load_rules()
JOHN = PatientPHI(patient_id="123", issuer="A", name="Doe^John", birth_date="19700101", sex="M")


def phi(**changes: object) -> PatientPHI:
    values = {"patient_id": "123", "issuer": "A", "name": "Doe^John", "birth_date": "19700101", "sex": "M"}
    values.update(changes)
    return PatientPHI(**values)  # type: ignore[arg-type]


def cand(identity_id: int, person: str, p: PatientPHI) -> Candidate:
    return Candidate(identity_id=identity_id, person_id=person, phi=normalize_phi(p))


def test_defaults_file_matches_the_issue() -> None:
    assert RULES == MatchRules()
    data = json.loads(DEFAULT_RULES_PATH.read_text())
    assert data["possible_same_person"] == "flag"
    assert data["version"] == 1


def test_rule1_same_key_same_phi_links_exactly() -> None:
    d = decide(normalize_phi(phi(name="JOHN^DOE ")), [cand(1, "p1", JOHN)], [], RULES)
    assert (d.action, d.person_id, d.method, d.rule) == ("link", "p1", "exact", "rule1_same_key_same_phi")
    assert d.flags == ()


def test_rule2_one_field_differs_links_and_flags_typo() -> None:
    d = decide(normalize_phi(phi(birth_date="19700102")), [cand(1, "p1", JOHN)], [], RULES)
    assert (d.action, d.person_id, d.method) == ("link", "p1", "rule")
    assert d.flag_kinds == ("possible_typo",)
    assert d.flags[0].evidence["differing_fields"] == ["birth_date"]
    assert d.flags[0].person_id == "p1" and d.flags[0].identity_id == 1
    assert d.confidence < 1.0


def test_rule3_two_fields_differ_new_person_id_collision() -> None:
    d = decide(normalize_phi(phi(name="Roe^Mary", sex="F")), [cand(1, "p1", JOHN)], [], RULES)
    assert d.action == "new_person" and d.person_id is None
    assert d.flag_kinds == ("id_collision",)
    assert d.flags[0].evidence["differing_fields"] == ["name", "sex"]


def test_rule3_collision_then_second_person_under_same_key_is_recognised() -> None:
    mary = phi(name="Roe^Mary", birth_date="19800505", sex="F")
    d = decide(normalize_phi(mary), [cand(1, "p1", JOHN), cand(2, "p2", mary)], [], RULES)
    assert (d.action, d.person_id, d.flags) == ("link", "p2", ())


def test_rule4_other_key_same_phi_new_person_flagged() -> None:
    other = cand(7, "p9", phi(patient_id="X9", issuer="B"))
    d = decide(normalize_phi(JOHN), [], [other], RULES)
    assert d.action == "new_person"
    assert d.flag_kinds == ("possible_same_person",)
    assert d.flags[0].person_id == "p9"


def test_rule4_policy_link_and_flag() -> None:
    rules = RULES.with_changes(possible_same_person="link_and_flag")
    other = cand(7, "p9", phi(patient_id="X9", issuer="B"))
    d = decide(normalize_phi(JOHN), [], [other], rules)
    assert (d.action, d.person_id, d.rule) == ("link", "p9", "rule4_link_and_flag")
    assert d.flag_kinds == ("possible_same_person",)
    # Two candidate persons: never pick one.
    two = [other, cand(8, "p10", phi(patient_id="Z", issuer="C"))]
    assert decide(normalize_phi(JOHN), [], two, rules).action == "new_person"


def test_patient_id_alone_is_never_a_key() -> None:
    # Same patient ID at another clinic with different PHI: not even a flag.
    other = cand(7, "p9", phi(issuer="B", name="Roe^Mary", birth_date="19800505", sex="F"))
    d = decide(normalize_phi(JOHN), [], [other], RULES)
    assert (d.action, d.flags) == ("new_person", ())


def test_fuzzy_similarity_only_flags() -> None:
    similar = cand(7, "p9", phi(patient_id="X9", issuer="B", name="Doe^Jon"))
    d = decide(normalize_phi(JOHN), [], [similar], RULES)
    assert d.action == "new_person"
    assert d.flag_kinds == ("similar_person",)
    assert d.flags[0].evidence["name_similarity"] >= RULES.fuzzy_name_threshold
    near_date = cand(8, "p8", phi(patient_id="X8", issuer="C", birth_date="19700110"))
    linking = RULES.with_changes(possible_same_person="link_and_flag")
    d2 = decide(normalize_phi(JOHN), [], [near_date], linking)
    assert d2.action == "new_person" and d2.flag_kinds == ("similar_person",)
    different_sex = cand(9, "p7", phi(patient_id="X7", issuer="D", name="Doe^Jon", sex="F"))
    assert decide(normalize_phi(JOHN), [], [different_sex], RULES).flags == ()


def test_rule5_missing_field_is_neither_match_nor_mismatch() -> None:
    d = decide(normalize_phi(phi(birth_date=None)), [cand(1, "p1", JOHN)], [], RULES)
    assert (d.action, d.person_id, d.method, d.flags) == ("link", "p1", "rule", ())
    # Only one field to decide on -> linked, flagged incomplete.
    d = decide(normalize_phi(phi(birth_date=None, sex=None)), [cand(1, "p1", JOHN)], [], RULES)
    assert d.action == "link" and d.flag_kinds == ("incomplete_phi",)
    # A brand-new patient with one field is created and flagged incomplete.
    d = decide(normalize_phi(PatientPHI(patient_id="5", issuer="A", sex="F")), [], [], RULES)
    assert d.action == "new_person" and d.flag_kinds == ("incomplete_phi",)


def test_missing_fields_plus_one_difference_is_typo_not_collision() -> None:
    d = decide(normalize_phi(phi(birth_date=None, name="Doe^Johnny")), [cand(1, "p1", JOHN)], [], RULES)
    assert d.action == "link" and d.flag_kinds == ("possible_typo",)


def test_ambiguous_same_key_never_picks() -> None:
    mary = phi(name="Roe^Mary", birth_date="19800505", sex="F")
    sparse = normalize_phi(PatientPHI(patient_id="123", issuer="A"))
    d = decide(sparse, [cand(1, "p1", JOHN), cand(2, "p2", mary)], [], RULES)
    assert d.action == "new_person"
    assert "ambiguous_match" in d.flag_kinds and "incomplete_phi" in d.flag_kinds


def test_best_identity_of_a_person_decides() -> None:
    # A person with a typo'd identity and a clean one: the clean one matches exactly.
    typo = phi(name="Doe^Jhon")
    d = decide(normalize_phi(JOHN), [cand(1, "p1", typo), cand(2, "p1", JOHN)], [], RULES)
    assert (d.action, d.person_id, d.flags) == ("link", "p1", ())


def test_no_key_new_person_with_rule4() -> None:
    other = cand(7, "p9", JOHN)
    d = decide(normalize_phi(phi(issuer=None)), [], [other], RULES)
    assert d.rule == "no_match_key" and d.flag_kinds == ("possible_same_person",)


def test_compare_reports_fields() -> None:
    c = compare(normalize_phi(JOHN), normalize_phi(phi(sex="F", birth_date=None)), RULES.compared_fields)
    assert c.equal == ("name",) and c.differing == ("sex",) and c.compared == ("name", "sex")


def test_rules_file_validation(tmp_path: Path) -> None:
    data = json.loads(DEFAULT_RULES_PATH.read_text())
    data["possible_same_person"] = "link_and_flag"
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    assert load_rules(path).possible_same_person == "link_and_flag"
    for bad in ({"possible_same_person": "merge"}, {"version": 99}, {"format": "x"},
                {"same_key": {"typo_max_differences": 2, "collision_min_differences": 2}},
                {"clinic_key_fields": ["patient_id"]}):
        path.write_text(json.dumps({**data, **bad}))
        with pytest.raises(ConfigurationError):
            load_rules(path)
    path.write_text("{not json")
    with pytest.raises(ConfigurationError):
        load_rules(path)


def test_link_and_flag_needs_complete_evidence() -> None:
    rules = RULES.with_changes(possible_same_person="link_and_flag")
    namesake = cand(7, "p9", phi(patient_id="X9", issuer="B", birth_date=None))
    d = decide(normalize_phi(JOHN), [], [namesake], rules)
    assert d.action == "new_person" and d.flag_kinds == ("possible_same_person",)


def test_rule4_on_present_fields_when_a_name_is_missing_flags_but_never_links() -> None:
    """Rules 4 + 5: a missing name is neither match nor mismatch; birth date + sex agreeing under
    another key is the rule-4 case on less evidence — flagged, never linked, whatever the policy."""
    other = cand(7, "p9", phi(patient_id="X9", issuer="B"))
    nameless = normalize_phi(phi(name=None))
    for rules in (RULES, RULES.with_changes(possible_same_person="link_and_flag")):
        d = decide(nameless, [], [other], rules)
        assert (d.action, d.flag_kinds) == ("new_person", ("possible_same_person",))
        assert d.flags[0].person_id == "p9"
        assert d.flags[0].evidence["rule"] == "rule4_same_present_phi_other_key"
        assert d.flags[0].evidence["equal_fields"] == ["birth_date", "sex"]
    # The name missing on the earlier identity instead: the same.
    d = decide(normalize_phi(JOHN), [], [cand(8, "p8", phi(patient_id="X8", issuer="B", name=None))], RULES)
    assert d.flag_kinds == ("possible_same_person",) and d.flags[0].person_id == "p8"
    # Present fields disagree (sex), or only one field left to compare: no such flag.
    d = decide(nameless, [], [cand(9, "p7", phi(patient_id="X7", issuer="B", sex="F"))], RULES)
    assert "possible_same_person" not in d.flag_kinds
    d = decide(normalize_phi(phi(name=None, sex=None)), [], [other], RULES)
    assert "possible_same_person" not in d.flag_kinds and "incomplete_phi" in d.flag_kinds


def test_fuzzy_flag_on_one_mistyped_name_part_with_equal_birth_date() -> None:
    earlier = cand(7, "p9", phi(patient_id="X9", issuer="B", name="Linmannti^Anna", sex="F"))
    d = decide(normalize_phi(phi(name="Linmannti^Anea", sex="F")), [], [earlier], RULES)
    assert (d.action, d.flag_kinds) == ("new_person", ("similar_person",))
    assert d.flags[0].evidence["birth_date"] == "equal" and d.flags[0].evidence["name_similarity"] >= 0.9
    # Another birth date: no flag (the name alone is not evidence).
    other_birth = normalize_phi(phi(name="Linmannti^Anea", sex="F", birth_date="19700202"))
    d = decide(other_birth, [], [earlier], RULES)
    assert d.flags == ()


def test_fuzzy_flag_on_a_mistyped_name_when_the_birth_date_is_missing_on_one_side() -> None:
    """Rule 5 for fuzzy evidence: a missing birth date is neither a match nor a mismatch, so a similar
    name of a sex that does not differ is flagged; an equal name is rule 4's, a dissimilar name or
    another sex is nothing."""
    earlier = cand(7, "p9", phi(patient_id="X9", issuer="B", name="Linmannti^Anna", sex="F"))
    no_birth = normalize_phi(phi(name="Linmanti^Anna", sex="F", birth_date=None))
    d = decide(no_birth, [], [earlier], RULES)
    assert (d.action, d.flag_kinds) == ("new_person", ("similar_person",))
    assert d.flags[0].evidence["birth_date"] == "missing"
    assert d.flags[0].evidence["name_similarity"] >= RULES.fuzzy_name_threshold
    assert d.flags[0].person_id == "p9"
    # The earlier identity lacks the birth date instead: the same.
    earlier_no_birth = cand(8, "p8", phi(patient_id="X8", issuer="B", name="Linmannti^Anna", sex="F",
                                         birth_date=None))
    d = decide(normalize_phi(phi(name="Linmanti^Anna", sex="F")), [], [earlier_no_birth], RULES)
    assert d.flag_kinds == ("similar_person",) and d.flags[0].evidence["birth_date"] == "missing"
    assert decide(no_birth, [], [cand(9, "p7", phi(patient_id="X7", issuer="B", name="Okafor^Grace",
                                                    sex="F"))], RULES).flags == ()
    assert decide(no_birth, [], [cand(9, "p7", phi(patient_id="X7", issuer="B", name="Linmannti^Anna",
                                                    sex="M"))], RULES).flags == ()
    equal_name = decide(normalize_phi(phi(name="Linmannti^Anna", sex="F", birth_date=None)), [], [earlier],
                        RULES)
    assert "similar_person" not in equal_name.flag_kinds
    with pytest.raises(ConfigurationError, match="name_search_threshold"):
        RULES.with_changes(name_search_threshold=0.0)
