"""Every torchaudio import of the package, in one place.

torchaudio is in maintenance mode and 2.11 is its last line. Its compiled library loads only next to
the torch it was built for: torchaudio 2.11.1 next to torch 2.11.0 fails with an OSError (undefined
symbol) on `import torchaudio`. An environment that already had another torch, or a resolver that
picks a newer torchaudio, ends there, so the first feature extraction would stop with a traceback from
ctypes. Here that becomes one `InstallError` line that names the pair to install. Keeping the imports
here also makes a later move away from torchaudio a change to this file and its few callers.
"""

from __future__ import annotations

import importlib
import re
from importlib import metadata
from types import ModuleType

from asr.errors import InstallError


def functional() -> ModuleType:
    """`torchaudio.functional`: the mel filter bank, CTC forced alignment."""
    return _load("torchaudio.functional")


def ctc_decoders() -> ModuleType:
    """`torchaudio.models.decoder`: flashlight-text's beam search with lexicon and KenLM LM."""
    return _load("torchaudio.models.decoder")


def _load(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except (ImportError, OSError) as e:
        import torch

        text = str(e).strip()
        reason = text.splitlines()[-1] if text else type(e).__name__
        raise InstallError(f"{name} does not load next to torch {torch.__version__} ({reason}); install the pair "
                           f"asr is pinned to: pip install {pinned_pair()}") from e


def pinned_pair() -> str:
    """The torch and torchaudio requirements of the installed asr package, as pip arguments."""
    try:
        requires = metadata.requires("asr") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        requires = []
    pins = [r for r in requires if re.match(r"torch(audio)?\s*[=<>~!]", r) and ";" not in r]
    return " ".join(f"'{r}'" for r in pins) if pins else "-e . (the torch and torchaudio pins of pyproject.toml)"
