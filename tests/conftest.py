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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random `tiny` character model with feature statistics: for tests where the transcript does not matter.
    Read it, never write it: the session shares it."""
    import numpy as np
    import torch

    from asr.audio import FeatureExtractor
    from asr.model import Model, preset_config, save_checkpoint
    from asr.text import CharTokenizer

    torch.manual_seed(0)
    tok = CharTokenizer()
    feats = FeatureExtractor()
    feats.set_stats([np.random.default_rng(0).standard_normal(16000).astype(np.float32)])
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, Model(preset_config("tiny", tok.vocab_size)), tok, feats, {"what": "random tiny model"})
    return path


@pytest.fixture(scope="session")
def an4_export(tmp_path_factory) -> Path:
    """The bundled `an4` model exported for the torch-free runtime (`asr export`), fp32: for tests/test_export.py
    and tests/test_runtime.py. Read it, never write it: the session shares it."""
    from asr.export import export

    folder = tmp_path_factory.mktemp("export") / "an4"
    export("an4", folder)
    return folder
