"""Fixtures for the de-identification core tests."""

from __future__ import annotations

import pytest

from tmi.deid import Deidentifier, OfflinePseudonymProvider, load_profile

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture(scope="session")
def clinic_profile():  # type: ignore[no-untyped-def]
    return load_profile("clinic-research")


@pytest.fixture(scope="session")
def basic_profile():  # type: ignore[no-untyped-def]
    return load_profile("basic")


@pytest.fixture
def deid(clinic_profile) -> Deidentifier:  # type: ignore[no-untyped-def]
    return Deidentifier(clinic_profile, KEY, OfflinePseudonymProvider(KEY))


@pytest.fixture
def basic_deid(basic_profile) -> Deidentifier:  # type: ignore[no-untyped-def]
    return Deidentifier(basic_profile, KEY, OfflinePseudonymProvider(KEY))
