"""Keys, offline pseudonyms, aliases and UID remapping."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from tests.unit.deid.conftest import KEY, OTHER_KEY
from tmi.deid import OfflinePseudonymProvider, UidMapper, alias_for, create_key_file, is_well_known, load_key
from tmi.deid.keys import load_or_create_key
from tmi.deid.pseudonyms import _FEMALE, _MALE, _NEUTRAL, PSEUDONYM_RE
from tmi.errors import ConfigurationError
from tmi.ports import PatientPHI, PseudonymProvider


def test_load_key_from_file_env_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMI_DEID_KEY", raising=False)
    monkeypatch.delenv("TMI_DEID_KEY_FILE", raising=False)
    with pytest.raises(ConfigurationError):
        load_key()
    path = tmp_path / "k"
    path.write_text(KEY.hex() + "\n")
    assert load_key(path) == KEY
    monkeypatch.setenv("TMI_DEID_KEY", base64.b64encode(OTHER_KEY).decode())
    assert load_key() == OTHER_KEY
    monkeypatch.setenv("TMI_DEID_KEY_FILE", str(path))
    assert load_key() == KEY
    monkeypatch.setenv("TMI_DEID_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError):
        load_key()
    monkeypatch.delenv("TMI_DEID_KEY_FILE")
    monkeypatch.setenv("TMI_DEID_KEY", "abcd")
    with pytest.raises(ConfigurationError, match="too short"):
        load_key()


def test_create_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "deid.key"
    key = create_key_file(path)
    assert len(key) == 32 and load_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        create_key_file(path)


def test_load_or_create_uses_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMI_DEID_KEY", raising=False)
    monkeypatch.delenv("TMI_DEID_KEY_FILE", raising=False)
    monkeypatch.setenv("TMI_RUN_DIR", str(tmp_path))
    key, path, created = load_or_create_key()
    assert created and path == tmp_path / "deid.key"
    again, _, created_again = load_or_create_key()
    assert again == key and not created_again


def test_offline_pseudonyms() -> None:
    provider = OfflinePseudonymProvider(KEY)
    assert isinstance(provider, PseudonymProvider)
    phi = PatientPHI(patient_id="12345", issuer="HOSP-A", sex="F")
    a = provider.assign(phi)
    assert PSEUDONYM_RE.match(a.pseudonym)
    # Normalisation: case and surrounding space do not matter.
    assert (
        provider.assign(PatientPHI(patient_id=" 12345 ", issuer="hosp-a", sex="F")).pseudonym == a.pseudonym
    )
    # The namespace matters: the same ID at another issuer is another patient.
    assert provider.assign(PatientPHI(patient_id="12345", issuer="HOSP-B")).pseudonym != a.pseudonym
    # Without issuer: institution, then calling AE title.
    inst = provider.assign(PatientPHI(patient_id="12345", institution="HOSP-A")).pseudonym
    aet = provider.assign(PatientPHI(patient_id="12345", calling_aet="HOSP-A")).pseudonym
    assert inst == aet == a.pseudonym
    assert OfflinePseudonymProvider(OTHER_KEY).assign(phi).pseudonym != a.pseudonym
    assert a.alias == alias_for(a.pseudonym, "F")


def test_alias_is_deterministic_sex_consistent_and_synthetic() -> None:
    provider = OfflinePseudonymProvider(KEY)
    pseudonyms = [provider.pseudonym_for(PatientPHI(patient_id=str(i))) for i in range(200)]
    for p in pseudonyms:
        assert alias_for(p, "F") == alias_for(p, "F")
        family, given = alias_for(p, "F").split("^")
        assert family.startswith("ALIAS-") and given in _FEMALE
        assert alias_for(p, "M").split("^")[1] in _MALE
        assert alias_for(p, None).split("^")[1] in _NEUTRAL
        assert alias_for(p, "O").split("^")[1] in _NEUTRAL
        assert alias_for(p, "F").isascii()
    assert len({alias_for(p, "F") for p in pseudonyms}) > 150


def test_uid_mapper() -> None:
    mapper = UidMapper(KEY)
    uid = "1.2.826.0.1.3680043.99.1.2.3"
    mapped = mapper.map(uid)
    assert mapped.startswith("2.25.") and len(mapped) <= 64 and mapped == UidMapper(KEY).map(uid)
    assert UidMapper(OTHER_KEY).map(uid) != mapped
    assert mapper.map(uid + "\x00") == mapped  # padding does not change identity
    for known in ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.4.50", "2.16.840.1.113883.6.96"):
        assert is_well_known(known) and mapper.map(known) == known
    assert mapper.map_multi(f"{uid}\\1.2.840.10008.1.2") == f"{mapped}\\1.2.840.10008.1.2"
    assert mapper.map("") == ""
