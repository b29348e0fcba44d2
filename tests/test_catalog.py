"""Bundled models by name (asr/catalog.py), `asr models`, and the models travelling with a plain install."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from asr.catalog import DEFAULT, available, models_dir, resolve
from asr.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def test_models_dir_is_the_repository_folder_in_an_editable_install():
    assert models_dir().resolve() == (REPO / "models").resolve()


def test_resolve_names_paths_and_folders(tmp_path):
    assert resolve("an4") == models_dir() / "an4" / "model.pt"
    assert resolve(models_dir() / "an4") == models_dir() / "an4" / "model.pt"  # a folder holding model.pt
    ckpt = tmp_path / "mine.pt"
    ckpt.write_bytes(b"x")
    assert resolve(ckpt) == ckpt
    with pytest.raises(InputError, match="no such model; bundled models: .*an4"):
        resolve("klingon")
    with pytest.raises(InputError, match="no such checkpoint file"):
        resolve(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="a folder without model.pt"):
        resolve(tmp_path)


def test_available_lists_the_default_first():
    names = [m.name for m in available()]
    assert "an4" in names
    if (models_dir() / DEFAULT / "model.pt").is_file():
        assert names[0] == DEFAULT
    an4 = next(m for m in available() if m.name == "an4")
    assert an4.size_mb > 1 and an4.trained_on and an4.dev_wer


def test_asr_models_lists_them():
    proc = subprocess.run([sys.executable, "-m", "asr", "models"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "an4:" in proc.stdout and "dev WER" in proc.stdout and "MB" in proc.stdout


def test_a_wheel_carries_the_models(tmp_path):
    """`pip install .` installs from a wheel: the bundled models must be in it, not only in the source tree."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("asr-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for m in available():
        assert f"asr/models/{m.name}/model.pt" in names
        assert f"asr/models/{m.name}/card.json" in names
    assert "asr/models/an4/lm-6gram.arpa.gz" in names and "asr/models/an4/MODEL.md" in names
