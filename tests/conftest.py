"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

# The real-speech data lives beside the repository: <repo>/../shared/data (see its README.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-speech data folder; the test is skipped where it is missing (e.g. a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared speech data not found at {SHARED_DATA}")
    return SHARED_DATA
