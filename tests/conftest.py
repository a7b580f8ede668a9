"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "sartorius"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real Sartorius data (``../shared/data/sartorius``); skips when absent."""
    if not (SHARED_DATA / "train.csv").is_file():
        pytest.skip("real data not found at ../shared/data/sartorius")
    return SHARED_DATA


# Hypothesis' per-example deadline measures wall time, which a busy 2-core machine (or CI)
# can exceed by chance; correctness is what these property tests check.
settings.register_profile("phaseseg", deadline=None)
settings.load_profile("phaseseg")
