"""Crosswalk pseudonyms are random (not derived), well-formed; aliases are deterministic per pseudonym."""

from __future__ import annotations

from tmi.crosswalk.pseudonyms import PSEUDONYM_RE, alias_for, new_pseudonym


def test_random_and_well_formed() -> None:
    values = {new_pseudonym() for _ in range(2000)}
    assert len(values) == 2000
    assert all(PSEUDONYM_RE.match(v) for v in values)
    assert not PSEUDONYM_RE.match("TMI-0123456789I")  # I, L, O, U are not Crockford digits


def test_alias_deterministic_and_sex_dependent() -> None:
    p = new_pseudonym()
    assert alias_for(p, "F") == alias_for(p, "F")
    assert isinstance(alias_for(p, None), str) and alias_for(p, None)
