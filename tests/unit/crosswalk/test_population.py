"""The synthetic population has the properties the bench relies on, and evaluate() scores correctly."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tmi.crosswalk.population import Outcome, Population, evaluate, generate_population, summarize_noise


@pytest.fixture(scope="module")
def population() -> Population:
    return generate_population(300, seed=7)


def test_reproducible(population: Population) -> None:
    assert generate_population(300, seed=7) == population
    assert generate_population(300, seed=8) != population


def test_has_the_hard_cases(population: Population) -> None:
    noise = summarize_noise(population)
    for key in ("kind:first", "kind:repeat", "kind:new_clinic", "noise:name_typo", "noise:missing_sex"):
        assert noise.get(key, 0) > 0, key
    # Clinics reuse IDs: one patient ID string names different people at different clinics.
    owners: dict[str, set[int]] = defaultdict(set)
    for a in population.arrivals:
        owners[a.phi.patient_id or ""].add(a.person)
    assert any(len(v) > 1 for v in owners.values())
    # Visits weeks apart, in arrival order.
    days = [a.day for a in population.arrivals]
    assert days == sorted(days) and max(days) - min(days) > 60
    assert population.arrivals[0].kind == "first"


def test_evaluate_perfect_and_broken_matchers(population: Population) -> None:
    perfect = [Outcome(f"p{a.person}", ("possible_typo",) if a.ambiguous else ())
               for a in population.arrivals]
    m = evaluate(population, perfect)
    assert (m["precision"], m["recall"], m["wrong_auto_merges"]) == (1.0, 1.0, 0)
    assert m["flagged_ambiguous"] == m["true_ambiguous"] > 0
    lumped = [Outcome("one", ()) for _ in population.arrivals]
    bad = evaluate(population, lumped)
    assert bad["recall"] == 1.0 and bad["precision"] < 0.05
    assert bad["wrong_auto_merges"] == len(population.arrivals) - sum(
        a.person == population.arrivals[0].person for a in population.arrivals)
    # Every arrival its own person, with flags naming the right earlier person: recall only via flags.
    first: dict[int, str] = {}
    split = []
    for i, a in enumerate(population.arrivals):
        earlier = first.setdefault(a.person, f"x{i}")
        split.append(Outcome(f"x{i}", ("similar_person",) if earlier != f"x{i}" else (),
                             (earlier,) if earlier != f"x{i}" else ()))
    s = evaluate(population, split)
    assert s["recall"] == 0.0 and s["recall_with_flags"] == 1.0 and s["wrong_auto_merges"] == 0
    with pytest.raises(ValueError):
        evaluate(population, perfect[:-1])
