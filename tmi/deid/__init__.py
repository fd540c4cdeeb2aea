"""De-identification core: PS3.15 Annex E profiles as data, keyed UIDs, pseudonyms, fail-closed verifier.

Pure: no network or database I/O (the pseudonym provider is a port). See docs/deid.md and docs/keys.md.
"""

from __future__ import annotations

from tmi.deid.core import Deidentifier, DeidResult, InstanceRef
from tmi.deid.keys import create_key_file, default_key_path, load_key, load_or_create_key
from tmi.deid.profile import Profile, load_profile
from tmi.deid.pseudonyms import OfflinePseudonymProvider, alias_for
from tmi.deid.uids import UidMapper, is_well_known

__all__ = [
    "DeidResult",
    "Deidentifier",
    "InstanceRef",
    "OfflinePseudonymProvider",
    "Profile",
    "UidMapper",
    "alias_for",
    "create_key_file",
    "default_key_path",
    "is_well_known",
    "load_key",
    "load_or_create_key",
    "load_profile",
]
