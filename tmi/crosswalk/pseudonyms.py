"""Random pseudonyms for crosswalk persons, and their sex-consistent alias.

In the crosswalk a pseudonym is *random* (``secrets``), not derived from PHI or a key: the link between
a person and the pseudonym exists only in the confidential database. The format matches the offline
provider of ``tmi.deid``: ``TMI-`` + 10 Crockford base32 characters (50 bits).

``alias_for`` is ``tmi.deid.alias_for`` when the de-identification package provides it (one alias scheme
for the whole system); until then a small local fallback with the same signature is used.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import secrets
from collections.abc import Callable
from functools import lru_cache
from typing import cast

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PSEUDONYM_RE = re.compile(r"^TMI-[0-9A-HJKMNP-TV-Z]{10}$")

_GIVEN_F = ("Alice", "Beatrix", "Clara", "Dora", "Edith", "Flora", "Greta", "Hanna", "Ida", "Jana", "Kira",
            "Lena", "Mira", "Nora", "Olga", "Paula")
_GIVEN_M = ("Anton", "Bruno", "Carl", "David", "Emil", "Felix", "Georg", "Hugo", "Ivan", "Jonas", "Karl",
            "Lukas", "Max", "Noah", "Oskar", "Paul")
_GIVEN_O = ("Alex", "Robin", "Kim", "Sam", "Charlie", "Jules", "Noa", "Eden")
_FAMILY = ("Ash", "Birch", "Cedar", "Elm", "Fir", "Hazel", "Juniper", "Larch", "Maple", "Oak", "Pine",
           "Rowan", "Spruce", "Willow", "Yew", "Alder")


def new_pseudonym() -> str:
    """A fresh random pseudonym ``TMI-XXXXXXXXXX`` (uniqueness is enforced by the database)."""
    value = int.from_bytes(secrets.token_bytes(7), "big") >> 6  # 50 random bits, one urandom call
    chars = []
    for _ in range(10):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "TMI-" + "".join(reversed(chars))


def _local_alias(pseudonym: str, sex: str | None) -> str:
    digest = hashlib.sha256(pseudonym.encode("ascii")).digest()
    given_pool = _GIVEN_F if sex == "F" else _GIVEN_M if sex == "M" else _GIVEN_O
    family = _FAMILY[digest[0] % len(_FAMILY)]
    given = given_pool[digest[1] % len(given_pool)]
    return f"{family}^{given}"


@lru_cache(maxsize=1)
def _resolve_alias_for() -> Callable[[str, str | None], str]:
    try:
        module = importlib.import_module("tmi.deid")
    except ImportError:
        return _local_alias
    found = getattr(module, "alias_for", None)
    return cast(Callable[[str, str | None], str], found) if callable(found) else _local_alias


def alias_for(pseudonym: str, sex: str | None) -> str:
    """Deterministic, sex-consistent alias (a DICOM PN value) for ``pseudonym``."""
    return _resolve_alias_for()(pseudonym, sex)
