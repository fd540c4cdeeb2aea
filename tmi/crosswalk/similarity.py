"""Fuzzy similarity of normalized names and dates. These only ever raise review flags, never link."""

from __future__ import annotations


def jaro(a: str, b: str) -> float:
    """Jaro similarity in [0, 1]."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(0, max(len(a), len(b)) // 2 - 1)
    a_match = [False] * len(a)
    b_match = [False] * len(b)
    matches = 0
    for i, ch in enumerate(a):
        lo, hi = max(0, i - window), min(len(b), i + window + 1)
        for j in range(lo, hi):
            if not b_match[j] and b[j] == ch:
                a_match[i] = b_match[j] = True
                matches += 1
                break
    if matches == 0:
        return 0.0
    transpositions = 0
    j = 0
    for i, ch in enumerate(a):
        if a_match[i]:
            while not b_match[j]:
                j += 1
            if ch != b[j]:
                transpositions += 1
            j += 1
    m = float(matches)
    return (m / len(a) + m / len(b) + (m - transpositions / 2) / m) / 3.0


def jaro_winkler(a: str, b: str, prefix_scale: float = 0.1, max_prefix: int = 4) -> float:
    """Jaro–Winkler similarity in [0, 1]: Jaro boosted by a shared prefix of up to ``max_prefix``."""
    score = jaro(a, b)
    prefix = 0
    for x, y in zip(a[:max_prefix], b[:max_prefix], strict=False):
        if x != y:
            break
        prefix += 1
    return score + prefix * prefix_scale * (1.0 - score)


def jaro_winkler_upper_bound(a: str, b: str, prefix_scale: float = 0.1, max_prefix: int = 4) -> float:
    """A cheap upper bound of :func:`jaro_winkler`: the matching characters cannot exceed the common
    character multiset, transpositions can only lower the score, the prefix boost is at most
    ``max_prefix``. Lets callers skip the quadratic computation for clearly different names."""
    if not a or not b:
        return 1.0 if a == b else 0.0
    common = sum(min(a.count(ch), b.count(ch)) for ch in set(a))  # size of the multiset intersection
    if common == 0:
        return 0.0
    bound = (common / len(a) + common / len(b) + 1.0) / 3.0
    prefix = 0
    for x, y in zip(a[:max_prefix], b[:max_prefix], strict=False):
        if x != y:
            break
        prefix += 1
    return min(1.0, bound + prefix * prefix_scale * (1.0 - bound))


def token_similarity(a: str, b: str) -> float:
    """Name-part similarity of two normalized name keys (space-separated tokens), when they share at
    least one part exactly; 0.0 otherwise.

    Symmetric Monge–Elkan: every part of one name is scored by its best Jaro–Winkler match among the
    other's parts, the scores are averaged, and the lower of the two directions is returned. It catches
    a keying error in one short part that the whole-string score dilutes less kindly (``ANNA
    LINMANNTI`` / ``ANEA LINMANNTI``: whole string 0.88, parts 0.93). Requiring one identical part keeps
    it cheap (a set intersection rejects most candidates) and keeps strangers who merely look alike out.
    """
    ta, tb = a.split(), b.split()
    if not ta or not tb or not set(ta) & set(tb):
        return 0.0

    def directed(xs: list[str], ys: list[str]) -> float:
        return sum(max(jaro_winkler(x, y) for y in ys) for x in xs) / len(xs)

    return min(directed(ta, tb), directed(tb, ta))


def dates_near(a: str, b: str) -> bool:
    """True when two YYYYMMDD dates differ by one substituted digit or one adjacent transposition
    (the usual keying errors), but are not equal."""
    if a == b or len(a) != len(b):
        return False
    diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if len(diffs) == 1:
        return True
    if len(diffs) == 2 and diffs[1] == diffs[0] + 1:
        i = diffs[0]
        return a[i] == b[i + 1] and a[i + 1] == b[i]
    # Day and month swapped (01/02 vs 02/01).
    return a[:4] == b[:4] and a[4:6] == b[6:8] and a[6:8] == b[4:6]
