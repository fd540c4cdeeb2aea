"""Jaro–Winkler and near-date detection (flags only)."""

from __future__ import annotations

import pytest

from tmi.crosswalk.similarity import dates_near, jaro, jaro_winkler


def test_jaro_winkler_reference_values() -> None:
    # Classic reference pairs (Winkler 1990).
    assert jaro("martha", "marhta") == pytest.approx(0.9444, abs=1e-4)
    assert jaro_winkler("martha", "marhta") == pytest.approx(0.9611, abs=1e-4)
    assert jaro_winkler("dwayne", "duane") == pytest.approx(0.84, abs=1e-2)
    assert jaro_winkler("dixon", "dicksonx") == pytest.approx(0.8133, abs=1e-4)
    assert jaro_winkler("same", "same") == 1.0
    assert jaro_winkler("", "abc") == 0.0
    assert jaro_winkler("abc", "xyz") == 0.0


@pytest.mark.parametrize(("a", "b", "near"), [
    ("19700101", "19700102", True),   # one digit
    ("19700112", "19700121", True),   # adjacent transposition
    ("19700102", "19700201", True),   # day/month swapped
    ("19700101", "19700101", False),  # equal is not "near"
    ("19700101", "19811231", False),
    ("19700112", "19700123", False),
])
def test_dates_near(a: str, b: str, near: bool) -> None:
    assert dates_near(a, b) is near


def test_upper_bound_never_below_the_score() -> None:
    import random

    from tmi.crosswalk.similarity import jaro_winkler_upper_bound

    rng = random.Random(3)
    words = ["doe john", "john doe", "jon doe", "smith anna", "smyth anna", "muller jurgen", "", "a", "ab"]
    words += ["".join(rng.choice("abcde ") for _ in range(rng.randint(1, 12))) for _ in range(300)]
    for _ in range(5000):
        a, b = rng.choice(words), rng.choice(words)
        assert jaro_winkler_upper_bound(a, b) + 1e-9 >= jaro_winkler(a, b), (a, b)
    assert jaro_winkler_upper_bound("smith anna", "kowalski zbigniew") < 0.9


def test_token_similarity_needs_a_shared_part_and_scores_the_rest() -> None:
    from tmi.crosswalk.similarity import jaro_winkler, token_similarity

    # A keying error in a short part: the whole string scores below 0.9, the parts above.
    assert jaro_winkler("anea linmannti", "anna linmannti") < 0.9
    assert token_similarity("anea linmannti", "anna linmannti") >= 0.9
    assert token_similarity("anna linmannti", "anea linmannti") == token_similarity(
        "anea linmannti", "anna linmannti")
    # No identical part: not this measure's business (strangers who merely look alike).
    assert token_similarity("anea linmanti", "anna linmannti") == 0.0
    # One shared common part, the other part unrelated: low.
    assert token_similarity("anna smith", "anna kowalczyk") < 0.9
    assert token_similarity("", "anna") == 0.0
