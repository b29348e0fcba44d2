"""torchaudio in one place, and a clear line when the installed torchaudio does not load next to torch."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from asr import torchaudio_api
from asr.errors import InstallError

REPO = Path(__file__).resolve().parents[1]


def test_only_torchaudio_api_imports_torchaudio():
    importers = [str(p.relative_to(REPO)) for p in sorted((REPO / "asr").rglob("*.py"))
                 if re.search(r"^\s*(import|from) torchaudio\b", p.read_text(), re.M)]
    assert importers == [], "import torchaudio through asr.torchaudio_api, which turns a broken install into one line"


def test_load_failure_becomes_install_error_naming_the_pins(monkeypatch):
    def broken(name):
        raise OSError(f"Could not load this library: /site/{name}/lib/libtorchaudio.so")

    monkeypatch.setattr(torchaudio_api.importlib, "import_module", broken)
    with pytest.raises(InstallError) as e:
        torchaudio_api.functional()
    message = str(e.value)
    assert "\n" not in message
    assert "torchaudio.functional does not load next to torch" in message
    assert "libtorchaudio.so" in message
    assert "pip install 'torch==" in message and "'torchaudio==" in message


def test_pinned_pair_is_pyprojects():
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if re.match(r"torch(audio)?==", d)]
    assert len(pins) == 2
    assert torchaudio_api.pinned_pair() == " ".join(f"'{p}'" for p in pins)


def test_modules_still_load():
    assert hasattr(torchaudio_api.functional(), "forced_align")
    assert hasattr(torchaudio_api.ctc_decoders(), "ctc_decoder")


def test_transcribe_with_a_torchaudio_that_does_not_load(tmp_path):
    """As torchaudio 2.11.1 fails next to torch 2.11.0: `import torchaudio` raises OSError from ctypes.
    Loading the model makes its feature extractor, so this fails before any decoder is chosen."""
    fake = tmp_path / "site" / "torchaudio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        'raise OSError("Could not load this library: ' + str(fake) + '/lib/libtorchaudio.so")\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    proc = subprocess.run([sys.executable, "-m", "asr", "transcribe", "examples/an4-dev-example.wav", "--model", "an4"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: torchaudio"), proc.stderr
    assert "pip install 'torch==" in lines[0]
    assert proc.stdout == ""
