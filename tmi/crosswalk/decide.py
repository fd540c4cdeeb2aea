"""The matching decision: given an incoming identity and the candidates found, link or create, and flag.

Pure function of values. The repository finds candidates (same match key; different key with the same
normalized name or birth date, or — for an arrival without a birth date — a similar name) and persists
whatever :func:`decide` returns.

Rules (defaults; thresholds come from :class:`~tmi.crosswalk.rules.MatchRules`):

1. same key, no compared field differs → link to that person (``exact`` when all three fields agree);
2. same key, exactly one field differs → link **and** flag ``possible_typo``;
3. same key, two or more fields differ → new person, flag ``id_collision``;
4. different key, same normalized PHI → new person, flag ``possible_same_person`` (policy
   ``link_and_flag``: link to that person instead, still flagged, when all compared fields are present
   and equal); fuzzy similarity (Jaro–Winkler names with an equal birth date, or with the birth date
   missing on one side; an equal name with a near birth date) only raises ``similar_person``;
5. an empty field is neither match nor mismatch; ``incomplete_phi`` when the decision rests on fewer than
   ``min_fields_for_decision`` of name, birth date, sex.

Rule 6 (same person weeks apart) follows from rules 1 and from identical arrivals sharing one identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tmi.crosswalk.normalize import NormalizedPHI, names_equal
from tmi.crosswalk.rules import MatchRules
from tmi.crosswalk.similarity import dates_near, jaro_winkler, jaro_winkler_upper_bound, token_similarity

FlagKind = Literal[
    "possible_typo", "id_collision", "possible_same_person", "similar_person", "incomplete_phi",
    "ambiguous_match",
]
FLAG_KINDS: tuple[str, ...] = (
    "possible_typo", "id_collision", "possible_same_person", "similar_person", "incomplete_phi",
    "ambiguous_match",
)
_MAX_FLAGS_PER_KIND = 5


@dataclass(frozen=True, slots=True)
class Candidate:
    """An existing scan identity (its effective, i.e. latest corrected, PHI) and its current person."""

    identity_id: int
    person_id: str
    phi: NormalizedPHI


@dataclass(frozen=True, slots=True)
class Comparison:
    """Field-by-field comparison of two identities over the compared fields both have."""

    equal: tuple[str, ...]
    differing: tuple[str, ...]

    @property
    def compared(self) -> tuple[str, ...]:
        return self.equal + self.differing


@dataclass(frozen=True, slots=True)
class FlagSpec:
    """A review flag to raise; ``evidence`` is JSON-ready and names fields, never values."""

    kind: FlagKind
    evidence: dict[str, Any] = field(default_factory=dict)
    person_id: str | None = None  # the *other* person concerned (None: only the incoming identity)
    identity_id: int | None = None  # the *other* identity compared


@dataclass(frozen=True, slots=True)
class Decision:
    """``action == "link"``: attach to ``person_id``; ``"new_person"``: create one. ``rule`` names why."""

    action: Literal["link", "new_person"]
    rule: str
    person_id: str | None = None
    method: Literal["exact", "rule"] = "rule"
    confidence: float = 1.0
    flags: tuple[FlagSpec, ...] = ()

    @property
    def flag_kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.kind for f in self.flags))


def compare(a: NormalizedPHI, b: NormalizedPHI, fields: Sequence[str]) -> Comparison:
    """Compare ``a`` and ``b`` on ``fields``; a field missing on either side is not compared."""
    equal: list[str] = []
    differing: list[str] = []
    for name in fields:
        if name == "name":
            same = names_equal(a.name, b.name)
        else:
            va, vb = getattr(a, name), getattr(b, name)
            same = None if not va or not vb else va == vb
        if same is True:
            equal.append(name)
        elif same is False:
            differing.append(name)
    return Comparison(equal=tuple(equal), differing=tuple(differing))


def _best_per_person(incoming: NormalizedPHI, candidates: Iterable[Candidate], rules: MatchRules,
                     ) -> dict[str, tuple[Comparison, Candidate]]:
    best: dict[str, tuple[Comparison, Candidate]] = {}
    for cand in candidates:
        cmp = compare(incoming, cand.phi, rules.compared_fields)
        current = best.get(cand.person_id)
        if current is None or (len(cmp.differing), -len(cmp.compared)) < (
                len(current[0].differing), -len(current[0].compared)):
            best[cand.person_id] = (cmp, cand)
    return best


def _evidence(rule: str, cmp: Comparison, cand: Candidate | None, **extra: Any) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "rule": rule,
        "differing_fields": list(cmp.differing),
        "equal_fields": list(cmp.equal),
    }
    if cand is not None:
        evidence["candidate_person_id"] = cand.person_id
        evidence["candidate_identity_id"] = cand.identity_id
    evidence.update(extra)
    return evidence


def decide(incoming: NormalizedPHI, same_key: Sequence[Candidate], other: Sequence[Candidate],
           rules: MatchRules) -> Decision:
    """Apply the matching rules. ``same_key``: identities under the incoming match key; ``other``:
    identities under other keys (or none) that share the normalized name or birth date."""
    flags: list[FlagSpec] = []
    present = [f for f in rules.compared_fields if incoming.has(f)]

    if incoming.match_key is not None and same_key:
        per_person = _best_per_person(incoming, same_key, rules)
        ranked = sorted(per_person.values(), key=lambda pc: (len(pc[0].differing), -len(pc[0].compared)))
        best_cmp, best = ranked[0]
        n_diff = len(best_cmp.differing)
        tied = [pc for pc in ranked
                if len(pc[0].differing) == n_diff and n_diff <= rules.typo_max_differences]
        if len(tied) > 1:
            for cmp, cand in tied[:_MAX_FLAGS_PER_KIND]:
                flags.append(FlagSpec("ambiguous_match", _evidence("same_key_ambiguous", cmp, cand),
                                      cand.person_id, cand.identity_id))
            flags.extend(_other_key_flags(incoming, _best_per_person(incoming, other, rules), rules))
            if len(present) < rules.min_fields_for_decision:
                flags.append(FlagSpec("incomplete_phi", {"rule": "rule5_incomplete_phi",
                                                         "present_fields": present}))
            return Decision("new_person", "same_key_ambiguous", flags=tuple(_dedupe(flags)))
        if n_diff <= rules.typo_max_differences:
            linked_rule = ("rule1_same_key_same_phi" if n_diff <= rules.link_max_differences
                           else "rule2_possible_typo")
            if n_diff > rules.link_max_differences:
                flags.append(FlagSpec("possible_typo", _evidence(linked_rule, best_cmp, best),
                                      best.person_id, best.identity_id))
            if len(best_cmp.compared) < rules.min_fields_for_decision:
                flags.append(FlagSpec("incomplete_phi", _evidence("rule5_incomplete_phi", best_cmp, best,
                                                                  decided_on=list(best_cmp.compared))))
            exact = n_diff == 0 and len(best_cmp.equal) == len(rules.compared_fields)
            confidence = 1.0 if exact else round(max(0.5, len(best_cmp.equal) / len(rules.compared_fields)
                                                     - 0.1 * n_diff), 2)
            return Decision("link", linked_rule, person_id=best.person_id,
                            method="exact" if exact else "rule", confidence=confidence, flags=tuple(flags))
        # Rule 3: the key is taken by someone else.
        for cmp, cand in ranked[:_MAX_FLAGS_PER_KIND]:
            flags.append(FlagSpec("id_collision", _evidence("rule3_id_collision", cmp, cand),
                                  cand.person_id, cand.identity_id))
        rule = "rule3_id_collision"
    else:
        rule = "new_key" if incoming.match_key is not None else "no_match_key"

    # Rule 4 and fuzzy flags for a new person (the key alone found nobody to link to).
    best_other = _best_per_person(incoming, other, rules)  # computed once: compare() is not free
    same_person = _same_phi_persons(best_other, rules)
    flags.extend(_other_key_flags(incoming, best_other, rules))
    if len(present) < rules.min_fields_for_decision:
        flags.append(FlagSpec("incomplete_phi", {"rule": "rule5_incomplete_phi", "present_fields": present}))
    # link_and_flag links only on complete evidence: every compared field present on both sides and
    # equal, and exactly one such person. Partial agreement (e.g. name + sex, birth date missing) is
    # common between namesakes, so it is only flagged.
    complete = [pc for pc in same_person if len(pc[0].equal) == len(rules.compared_fields)]
    if (rules.possible_same_person == "link_and_flag" and len(same_person) == 1 and len(complete) == 1
            and rule != "rule3_id_collision"):
        target = complete[0][1]
        return Decision("link", "rule4_link_and_flag", person_id=target.person_id, method="rule",
                        confidence=0.8, flags=tuple(_dedupe(flags)))
    return Decision("new_person", rule, flags=tuple(_dedupe(flags)))


def _same_phi_persons(best_other: dict[str, tuple[Comparison, Candidate]], rules: MatchRules,
                      ) -> list[tuple[Comparison, Candidate]]:
    """Rule 4 candidates: no compared field differs, the names agree, and enough fields were compared."""
    found = []
    for cmp, cand in best_other.values():
        if (not cmp.differing and "name" in cmp.equal
                and len(cmp.compared) >= max(2, rules.min_fields_for_decision)):
            found.append((cmp, cand))
    return found


def _name_missing_on_one_side(incoming: NormalizedPHI, cand: Candidate) -> bool:
    return not (incoming.name.present and cand.phi.name.present)


def _other_key_flags(incoming: NormalizedPHI, best_other: dict[str, tuple[Comparison, Candidate]],
                     rules: MatchRules) -> list[FlagSpec]:
    flags: list[FlagSpec] = []
    strong = {cand.person_id for _, cand in _same_phi_persons(best_other, rules)}
    for cmp, cand in best_other.values():
        if cand.person_id in strong:
            flags.append(FlagSpec("possible_same_person", _evidence("rule4_same_phi_other_key", cmp, cand),
                                  cand.person_id, cand.identity_id))
            continue
        # Rules 4 + 5: a name missing on one side is neither a match nor a mismatch, so the fields that
        # are present decide. When they all agree (birth date and sex at least), it is the same rule-4
        # case on less evidence: flagged for review, never linked (link_and_flag needs every field).
        if (not cmp.differing and _name_missing_on_one_side(incoming, cand)
                and len(cmp.compared) >= max(2, rules.min_fields_for_decision)):
            flags.append(FlagSpec("possible_same_person",
                                  _evidence("rule4_same_present_phi_other_key", cmp, cand,
                                            name_missing=True),
                                  cand.person_id, cand.identity_id))
            continue
        similarity = _fuzzy(incoming, cand.phi, rules)
        if similarity is not None:
            flags.append(FlagSpec("similar_person", _evidence("rule4_fuzzy", cmp, cand, **similarity),
                                  cand.person_id, cand.identity_id))
    by_kind: dict[str, int] = {}
    kept = []
    for flag in flags:
        by_kind[flag.kind] = by_kind.get(flag.kind, 0) + 1
        if by_kind[flag.kind] <= _MAX_FLAGS_PER_KIND:
            kept.append(flag)
    return kept


def _fuzzy(a: NormalizedPHI, b: NormalizedPHI, rules: MatchRules) -> dict[str, Any] | None:
    """Similarity evidence when ``b`` looks like ``a`` with a keying error; ``None`` otherwise."""
    if a.sex and b.sex and a.sex != b.sex:
        return None
    if not a.name.key or not b.name.key:
        return None
    same_name = names_equal(a.name, b.name) is True
    if a.birth_date and b.birth_date:
        if a.birth_date == b.birth_date and not same_name:
            name_score = _name_similarity(a, b, rules)
            if name_score >= rules.fuzzy_name_threshold:
                return {"name_similarity": round(name_score, 3), "birth_date": "equal"}
        if same_name and rules.near_birth_dates and dates_near(a.birth_date, b.birth_date):
            return {"name_similarity": 1.0, "birth_date": "near"}
        return None
    # Rule 5: a birth date missing on one side is neither a match nor a mismatch, so a similar name (a
    # keying error: an equal one is rule 4's) of a sex that does not differ is the evidence there is.
    if not same_name:
        name_score = _name_similarity(a, b, rules)
        if name_score >= rules.fuzzy_name_threshold:
            return {"name_similarity": round(name_score, 3), "birth_date": "missing"}
    return None


def _name_similarity(a: NormalizedPHI, b: NormalizedPHI, rules: MatchRules) -> float:
    """Jaro–Winkler of the whole normalized names (skipped when its cheap upper bound is already below
    the threshold), or part-wise when that is higher (:func:`token_similarity`)."""
    score = 0.0
    if jaro_winkler_upper_bound(a.name.key, b.name.key) >= rules.fuzzy_name_threshold:
        score = jaro_winkler(a.name.key, b.name.key)
    if score < rules.fuzzy_name_threshold:
        score = max(score, token_similarity(a.name.key, b.name.key))
    return score


def _dedupe(flags: Iterable[FlagSpec]) -> list[FlagSpec]:
    seen: set[tuple[str, str | None]] = set()
    out = []
    for flag in flags:
        key = (flag.kind, flag.person_id)
        if key not in seen:
            seen.add(key)
            out.append(flag)
    return out
