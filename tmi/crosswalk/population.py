"""A synthetic patient population with known truth, to measure the matching rules.

Clinics number their patients from the same starting value (so IDs are reused across clinics), some
clinics send an issuer and others only an institution name; patients visit several clinics, come back
weeks apart, and images of an older study may arrive after newer ones. Arrivals carry the usual noise:
formatting variants (case, component order, empty components, accents), typos in names and birth dates,
missing fields, and now and then a clinic that hands an existing ID to a different patient.

Everything is generated from a seed (``random.Random``), so a run is reproducible. No real person's data
is involved. :func:`evaluate` scores a matcher's output against the truth.
"""

from __future__ import annotations

import random
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from tmi.crosswalk.decide import compare
from tmi.crosswalk.normalize import normalize_phi
from tmi.ports import PatientPHI

_FAMILY_PARTS = ("ber", "gon", "mar", "tel", "vik", "son", "dal", "ros", "lin", "kar", "sch", "mul", "fer",
                 "nan", "dez", "ova", "ric", "hol", "lund", "berg", "mann", "ski", "ez", "ti", "ra", "no")
_FAMILY_ACCENTED = ("Müller", "Núñez", "Søren", "Łukasz", "Çelik", "Brontë", "García", "Østby", "Ångström")
_GIVEN_F = ("Anna", "Maria", "Eva", "Sofia", "Lena", "Clara", "Ines", "Marta", "Julia", "Nora", "Rosa", "Zoé",
            "Chloé", "Léa", "Noémie", "Hanna", "Ida", "Olga", "Vera", "Yara", "Emma", "Alba", "Irene")
_GIVEN_M = ("Jan", "Paul", "Luca", "Noah", "Emil", "Felix", "Hugo", "Ivan", "Karl", "Lars", "Marco", "Omar",
            "José", "André", "Jérôme", "Björn", "Raúl", "Timo", "Sven", "Adam", "Eric", "Owen", "Piet")


@dataclass(frozen=True, slots=True)
class TruePerson:
    index: int
    family: str
    given: str
    birth_date: str
    sex: str


@dataclass(frozen=True, slots=True)
class Arrival:
    """One incoming instance: the PHI as sent, who it truly is, and what makes it hard.

    ``kind`` is ``first`` (first arrival of a person anywhere), ``repeat`` (same clinic again),
    ``new_clinic`` (a known person at a clinic not seen before for them) or ``collision`` (a clinic
    re-used an ID that belongs to someone else). ``noise`` lists what was done to the PHI.
    ``ambiguous`` is set by :func:`generate_population` when a correct matcher must raise a flag.
    """

    phi: PatientPHI
    person: int
    day: int
    kind: str
    noise: tuple[str, ...] = ()
    ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class Population:
    persons: tuple[TruePerson, ...]
    arrivals: tuple[Arrival, ...]
    clinics: tuple[str, ...] = field(default=())


def _family(rng: random.Random) -> str:
    if rng.random() < 0.08:
        return rng.choice(_FAMILY_ACCENTED)
    parts = rng.randint(2, 3)
    return "".join(rng.choice(_FAMILY_PARTS) for _ in range(parts)).capitalize()


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text + "x"
    i = rng.randrange(1, len(text) - 1)
    op = rng.choice(("swap", "replace", "drop", "double"))
    if op == "swap":
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    if op == "replace":
        ch = rng.choice("aeiourstnl".replace(text[i].lower(), ""))
        return text[:i] + ch + text[i + 1:]
    if op == "drop":
        return text[:i] + text[i + 1:]
    return text[:i] + text[i] + text[i:]


def _date_typo(rng: random.Random, value: str) -> str:
    for _ in range(20):
        i = rng.choice((3, 6, 7))  # last year digit or day digits: stays a valid date more often
        candidate = value[:i] + str(rng.randint(0, 9)) + value[i + 1:]
        if candidate != value:
            try:
                date(int(candidate[:4]), int(candidate[4:6]), int(candidate[6:]))
            except ValueError:
                continue
            return candidate
    return value


def _render_name(rng: random.Random, family: str, given: str) -> str:
    variant = rng.random()
    if variant < 0.55:
        return f"{family}^{given}"
    if variant < 0.7:
        return f"{family.upper()}^{given.upper()}"
    if variant < 0.8:
        return f"{family}^{given}^^^"
    if variant < 0.88:
        return f"{family} {given}"
    if variant < 0.94:
        return f"{given}^{family}"  # component order swapped by a misconfigured modality
    decomposed = unicodedata.normalize("NFKD", f"{family}^{given}")
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.upper()  # accents lost on an old modality


def generate_population(n_persons: int = 2000, *, n_clinics: int = 8, seed: int = 20261121,
                        multi_clinic_rate: float = 0.2, typo_rate: float = 0.03, missing_rate: float = 0.05,
                        collision_rate: float = 0.01, max_visits: int = 4) -> Population:
    """Generate persons, their visits and the arrivals they produce, in arrival order."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    clinics = tuple(f"CLINIC-{i:02d}" for i in range(n_clinics))
    sends_issuer = {c: rng.random() < 0.7 for c in clinics}
    next_id = dict.fromkeys(clinics, 1000)
    persons: list[TruePerson] = []
    for index in range(n_persons):
        sex = rng.choice("MF")
        given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
        born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 365 * 90))
        persons.append(TruePerson(index, _family(rng), given, born.strftime("%Y%m%d"), sex))

    events: list[tuple[int, int, str, str, str]] = []  # (day, person, clinic, patient id, kind hint)
    for person in persons:
        home = rng.choice(clinics)
        visited = [home]
        if rng.random() < multi_clinic_rate:
            visited += rng.sample([c for c in clinics if c != home], rng.randint(1, 2))
        for clinic in visited:
            next_id[clinic] += 1
            pid = str(next_id[clinic])
            start = rng.randrange(0, 365)
            for visit in range(rng.randint(1, max_visits)):
                day = start + visit * rng.randint(14, 60)  # weeks apart
                for _ in range(rng.randint(1, 3)):  # several instances per study
                    delay = rng.choice((0, 0, 0, 0, 1, 2, 30))  # some images arrive weeks late
                    events.append((day + delay, person.index, clinic, pid, "visit"))
    # Clinics that re-use an existing ID for a new patient.
    n_collisions = int(len(persons) * collision_rate)
    for _ in range(n_collisions):
        day, _, clinic, pid, _ = rng.choice(events)
        sex = rng.choice("MF")
        born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 365 * 90))
        newcomer = TruePerson(len(persons), _family(rng), rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M),
                              born.strftime("%Y%m%d"), sex)
        persons.append(newcomer)
        events.append((day + rng.randint(1, 90), newcomer.index, clinic, pid, "collision"))
    events.sort(key=lambda e: (e[0], rng.random()))

    arrivals: list[Arrival] = []
    seen_person_clinic: set[tuple[int, str]] = set()
    seen_person: set[int] = set()
    key_owner: dict[tuple[str, str], int] = {}
    history: dict[tuple[str, str, int], list[PatientPHI]] = defaultdict(list)
    for day, index, clinic, pid, hint in events:
        person = persons[index]
        noise: list[str] = []
        family, given, birth, sex = person.family, person.given, person.birth_date, person.sex
        if rng.random() < typo_rate:
            if rng.random() < 0.7:
                noise.append("name_typo")
                if rng.random() < 0.5:
                    family = _typo(rng, family)
                else:
                    given = _typo(rng, given)
            else:
                noise.append("birth_typo")
                birth = _date_typo(rng, birth)
        name: str | None = _render_name(rng, family, given)
        sex_value: str | None = sex
        birth_value: str | None = birth
        if rng.random() < missing_rate:
            dropped = rng.choice(("birth_date", "sex", "sex", "birth_date", "name"))
            noise.append(f"missing_{dropped}")
            if dropped == "birth_date":
                birth_value = None
            elif dropped == "sex":
                sex_value = None
            else:
                name = None
        phi = PatientPHI(
            patient_id=pid, issuer=clinic if sends_issuer[clinic] else None,
            institution=f"{clinic} Hospital", calling_aet=f"{clinic[-2:]}MOD{rng.randint(1, 3)}",
            name=name, birth_date=birth_value, sex=sex_value,
        )
        key = (clinic, pid)
        if hint == "collision" and key_owner.get(key, index) != index:
            kind = "collision"
        elif index not in seen_person:
            kind = "first"
        elif (index, clinic) not in seen_person_clinic:
            kind = "new_clinic"
        else:
            kind = "repeat"
        ambiguous = _is_ambiguous(kind, phi, history[(clinic, pid, index)])
        arrivals.append(Arrival(phi=phi, person=index, day=day, kind=kind, noise=tuple(noise),
                                ambiguous=ambiguous))
        history[(clinic, pid, index)].append(phi)
        seen_person.add(index)
        seen_person_clinic.add((index, clinic))
        key_owner.setdefault(key, index)
    return Population(persons=tuple(persons), arrivals=tuple(arrivals), clinics=clinics)


def _is_ambiguous(kind: str, phi: PatientPHI, earlier_same_key: Sequence[PatientPHI]) -> bool:
    """The truth of "a correct matcher must flag this": an ID collision, a known person at a new clinic,
    or a repeat whose PHI conflicts with every earlier arrival of that person under that key."""
    if kind in ("collision", "new_clinic"):
        return True
    if kind == "repeat" and earlier_same_key:
        norm = normalize_phi(phi)
        return all(compare(norm, normalize_phi(prev), ("name", "birth_date", "sex")).differing
                   for prev in earlier_same_key)
    return False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the matcher did with one arrival: the person it chose and the flags it raised."""

    person_id: str
    flags: tuple[str, ...]
    flagged_persons: tuple[str, ...] = ()  # the other persons the flags point a reviewer at


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def evaluate(population: Population, outcomes: Sequence[Outcome]) -> dict[str, float | int]:
    """Pairwise precision/recall of "same person" over arrivals, wrong automatic merges, flag coverage.

    - ``precision``/``recall``: over all pairs of arrivals, predicted same person vs truly same person.
    - ``recall_with_flags``: as recall, after joining every predicted person with the persons its flags
      point at (what a reviewer confirming the right flags reaches; policy ``flag`` defers cross-clinic
      links to review).
    - ``wrong_auto_merges``: arrivals linked to a predicted person that truly is someone else, with no
      flag raised (target 0); ``wrong_flagged_links``: the same, but flagged for review.
    - ``true_ambiguous``/``flagged_ambiguous``: arrivals a correct matcher must flag, and how many were.
    """
    if len(outcomes) != len(population.arrivals):
        raise ValueError("one outcome per arrival is required")
    truth = [a.person for a in population.arrivals]
    predicted = [o.person_id for o in outcomes]
    both = Counter(zip(truth, predicted, strict=True))
    tp = sum(_pairs(n) for n in both.values())
    predicted_pairs = sum(_pairs(n) for n in Counter(predicted).values())
    true_pairs = sum(_pairs(n) for n in Counter(truth).values())

    owner: dict[str, int] = {}
    wrong_auto = wrong_flagged = 0
    for arrival, outcome in zip(population.arrivals, outcomes, strict=True):
        first_owner = owner.setdefault(outcome.person_id, arrival.person)
        if first_owner != arrival.person:
            if outcome.flags:
                wrong_flagged += 1
            else:
                wrong_auto += 1
    # Recall counting flagged splits: merge the predicted clusters a flag connects (union-find).
    parent: dict[str, str] = {p: p for p in predicted}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for outcome in outcomes:
        for other in outcome.flagged_persons:
            parent.setdefault(other, other)
            parent[find(outcome.person_id)] = find(other)
    merged = Counter(zip(truth, (find(p) for p in predicted), strict=True))
    tp_flags = sum(_pairs(n) for n in merged.values())

    true_amb = sum(a.ambiguous for a in population.arrivals)
    flagged_amb = sum(a.ambiguous and bool(o.flags)
                      for a, o in zip(population.arrivals, outcomes, strict=True))
    flagged_total = sum(bool(o.flags) for o in outcomes)
    return {
        "arrivals": len(outcomes),
        "true_persons": len(set(truth)),
        "predicted_persons": len(set(predicted)),
        "precision": round(tp / predicted_pairs, 6) if predicted_pairs else 1.0,
        "recall": round(tp / true_pairs, 6) if true_pairs else 1.0,
        "recall_with_flags": round(tp_flags / true_pairs, 6) if true_pairs else 1.0,
        "wrong_auto_merges": wrong_auto,
        "wrong_flagged_links": wrong_flagged,
        "true_ambiguous": true_amb,
        "flagged_ambiguous": flagged_amb,
        "flagged_arrivals": flagged_total,
        "flags_on_unambiguous": flagged_total - flagged_amb,
    }


def summarize_noise(population: Population) -> Mapping[str, int]:
    """How many arrivals of each kind and noise type the population holds (for reports)."""
    counts: Counter[str] = Counter()
    for arrival in population.arrivals:
        counts[f"kind:{arrival.kind}"] += 1
        for item in arrival.noise:
            counts[f"noise:{item}"] += 1
    return dict(sorted(counts.items()))
