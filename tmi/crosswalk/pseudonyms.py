"""Random pseudonyms for crosswalk persons, and their sex-consistent alias.

In the crosswalk a pseudonym is *random* (``secrets``), not derived from PHI or a key: the link between
a person and the pseudonym exists only in the confidential database. The format matches the offline
provider of ``tmi.deid``: ``TMI-`` + 10 Crockford base32 characters (50 bits).

``alias_for`` is ``tmi.deid``'s (one alias scheme for the whole system), imported when first used.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PSEUDONYM_RE = re.compile(r"^TMI-[0-9A-HJKMNP-TV-Z]{10}$")


def new_pseudonym() -> str:
    """A fresh random pseudonym ``TMI-XXXXXXXXXX`` (uniqueness is enforced by the database)."""
    value = int.from_bytes(secrets.token_bytes(7), "big") >> 6  # 50 random bits, one urandom call
    chars = []
    for _ in range(10):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "TMI-" + "".join(reversed(chars))


def alias_for(pseudonym: str, sex: str | None, avoid: Collection[str] = ()) -> str:
    """Deterministic, sex-consistent alias (a DICOM PN value) for ``pseudonym`` — the de-identification
    core's scheme, so the alias stored with a person is the one published. ``avoid``: the patient's own
    name words (:func:`name_words`), which the alias must not carry."""
    from tmi.deid.pseudonyms import alias_for as deid_alias_for

    return deid_alias_for(pseudonym, sex, avoid=avoid)


def name_words(name: str | None) -> set[str]:
    """The words of a PN value an alias must avoid (see :func:`tmi.deid.pseudonyms.name_words`)."""
    from tmi.deid.pseudonyms import name_words as deid_name_words

    return deid_name_words(name)
