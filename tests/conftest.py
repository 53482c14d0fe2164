"""Shared fixtures: where the real recordings live, and a small thread count for a 2-core CI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
FSDD_RECORDINGS = SHARED_DATA / "fsdd" / "recordings"

torch.set_num_threads(2)


@pytest.fixture
def fsdd_recordings() -> Path:
    """The real FSDD recordings beside the repository (../shared/data/fsdd); skip when absent."""
    if not FSDD_RECORDINGS.is_dir():
        pytest.skip(f"real recordings not found at {FSDD_RECORDINGS} (../shared is absent in a user's clone)")
    return FSDD_RECORDINGS
