"""The crosswalk's pure core: PHI normalization, matching rules as data, the matching decision,
fuzzy similarity, random pseudonyms and a synthetic population with known truth. No I/O here;
``adapters.db.crosswalk`` persists decisions in PostgreSQL."""

from tmi.crosswalk.decide import Candidate, Comparison, Decision, FlagSpec, compare, decide
from tmi.crosswalk.normalize import (
    NormalizedName,
    NormalizedPHI,
    normalize_name,
    normalize_phi,
    raw_fingerprint,
)
from tmi.crosswalk.rules import MatchRules, load_rules

__all__ = [
    "Candidate", "Comparison", "Decision", "FlagSpec", "MatchRules", "NormalizedName", "NormalizedPHI",
    "compare", "decide", "load_rules", "normalize_name", "normalize_phi", "raw_fingerprint",
]
