"""The matching rules as data: a versioned JSON file, loaded and validated once.

``tmi/crosswalk/rules/default.json`` holds the defaults of issue 3. An administrator changes matching
behaviour by editing (a copy of) that file, e.g. ``"possible_same_person": "link_and_flag"``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from tmi.errors import ConfigurationError

DEFAULT_RULES_PATH = Path(__file__).with_name("rules") / "default.json"
RULES_FORMAT = "tmi-crosswalk-rules"
SUPPORTED_VERSIONS = frozenset({1})
PossibleSamePersonPolicy = Literal["flag", "link_and_flag"]
_CLINIC_FIELDS = frozenset({"issuer", "institution", "calling_aet"})
_PHI_FIELDS = frozenset({"name", "birth_date", "sex"})


@dataclass(frozen=True, slots=True)
class MatchRules:
    """Validated matching rules; see ``docs/crosswalk.md`` for the meaning of each field."""

    version: int = 1
    clinic_key_fields: tuple[str, ...] = ("issuer", "institution", "calling_aet")
    compared_fields: tuple[str, ...] = ("name", "birth_date", "sex")
    link_max_differences: int = 0
    typo_max_differences: int = 1
    collision_min_differences: int = 2
    min_fields_for_decision: int = 2
    possible_same_person: PossibleSamePersonPolicy = "flag"
    fuzzy_name_threshold: float = 0.9
    near_birth_dates: bool = True
    max_candidates: int = 50
    name_search_threshold: float = 0.45

    def with_changes(self, **changes: Any) -> MatchRules:
        """A copy with ``changes`` applied and validated (handy for tests and policy switches)."""
        return _validated(dataclasses.replace(self, **changes))


def _validated(rules: MatchRules) -> MatchRules:
    problems: list[str] = []
    if rules.version not in SUPPORTED_VERSIONS:
        problems.append(f"unsupported rules version {rules.version}")
    if not rules.clinic_key_fields or not set(rules.clinic_key_fields) <= _CLINIC_FIELDS:
        problems.append(f"clinic_key_fields must be a non-empty subset of {sorted(_CLINIC_FIELDS)}")
    if not rules.compared_fields or not set(rules.compared_fields) <= _PHI_FIELDS:
        problems.append(f"compared_fields must be a non-empty subset of {sorted(_PHI_FIELDS)}")
    if not 0 <= rules.link_max_differences <= rules.typo_max_differences < rules.collision_min_differences:
        problems.append("need 0 <= link_max_differences <= typo_max_differences < collision_min_differences")
    if not 0 <= rules.min_fields_for_decision <= len(rules.compared_fields):
        problems.append("min_fields_for_decision must be between 0 and the number of compared fields")
    if rules.possible_same_person not in ("flag", "link_and_flag"):
        problems.append("possible_same_person must be 'flag' or 'link_and_flag'")
    if not 0.0 < rules.fuzzy_name_threshold <= 1.0:
        problems.append("fuzzy.name_threshold must be in (0, 1]")
    if rules.max_candidates < 1:
        problems.append("fuzzy.max_candidates must be >= 1")
    if not 0.0 < rules.name_search_threshold <= 1.0:
        problems.append("fuzzy.name_search_threshold must be in (0, 1]")
    if problems:
        raise ConfigurationError("invalid crosswalk rules: " + "; ".join(problems))
    return rules


def rules_from_mapping(data: Mapping[str, Any]) -> MatchRules:
    """Build and validate :class:`MatchRules` from the parsed rules file."""
    if data.get("format") != RULES_FORMAT:
        raise ConfigurationError(f"not a crosswalk rules file (format must be {RULES_FORMAT!r})")
    try:
        same_key = data.get("same_key", {})
        fuzzy = data.get("fuzzy", {})
        if fuzzy.get("algorithm", "jaro_winkler") != "jaro_winkler":
            raise ConfigurationError("fuzzy.algorithm: only 'jaro_winkler' is supported")
        defaults = MatchRules()
        rules = MatchRules(
            version=int(data["version"]),
            clinic_key_fields=tuple(data.get("clinic_key_fields", defaults.clinic_key_fields)),
            compared_fields=tuple(data.get("compared_fields", defaults.compared_fields)),
            link_max_differences=int(same_key.get("link_max_differences", defaults.link_max_differences)),
            typo_max_differences=int(same_key.get("typo_max_differences", defaults.typo_max_differences)),
            collision_min_differences=int(
                same_key.get("collision_min_differences", defaults.collision_min_differences)),
            min_fields_for_decision=int(
                data.get("min_fields_for_decision", defaults.min_fields_for_decision)),
            possible_same_person=cast(PossibleSamePersonPolicy,
                                      data.get("possible_same_person", defaults.possible_same_person)),
            fuzzy_name_threshold=float(fuzzy.get("name_threshold", defaults.fuzzy_name_threshold)),
            near_birth_dates=bool(fuzzy.get("near_birth_dates", defaults.near_birth_dates)),
            max_candidates=int(fuzzy.get("max_candidates", defaults.max_candidates)),
            name_search_threshold=float(fuzzy.get("name_search_threshold", defaults.name_search_threshold)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigurationError(f"invalid crosswalk rules file: {exc}") from exc
    return _validated(rules)


def load_rules(path: str | Path | None = None) -> MatchRules:
    """Load the rules file at ``path`` (default: the packaged ``rules/default.json``)."""
    target = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read crosswalk rules {target}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"crosswalk rules {target} must be a JSON object")
    return rules_from_mapping(data)
