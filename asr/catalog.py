"""The bundled models, by name: where they are installed, what each is, and NAME-or-PATH resolution.

The repository's top-level `models/` folder installs as the package `asr.models` (pyproject.toml maps it),
so a plain `pip install .` or a wheel carries the models and an editable install reads them in place. Each
model is a folder `models/<name>/` with `model.pt`, its LM files, `MODEL.md` (the model card) and
`card.json`, the few facts `asr models` lists without loading any weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from asr.errors import InputError

DEFAULT = "english"  # the model `asr transcribe` and `asr evaluate` use when no --model is given


def models_dir() -> Path:
    """The installed `models/` folder (package data of `asr.models`)."""
    from importlib.resources import files

    try:
        return Path(str(files("asr.models")))
    except ModuleNotFoundError:  # run from a source tree that was never installed
        return Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path  # the checkpoint
    description: str = ""
    trained_on: str = ""
    dev_wer: dict[str, str] = field(default_factory=dict)  # dev set -> "greedy % / beam+LM %"

    @property
    def size_mb(self) -> float:
        """The whole folder: checkpoint, LM and lexicon."""
        return sum(f.stat().st_size for f in self.path.parent.iterdir() if f.is_file()) / 1e6


def available() -> list[ModelInfo]:
    """Every bundled model (a folder with model.pt), the default first."""
    root = models_dir()
    found = []
    for folder in sorted(p for p in root.iterdir() if (p / "model.pt").is_file()) if root.is_dir() else []:
        card = {}
        if (folder / "card.json").is_file():
            card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
        found.append(ModelInfo(folder.name, folder / "model.pt", card.get("description", ""),
                               card.get("trained_on", ""), card.get("dev_wer", {})))
    return sorted(found, key=lambda m: (m.name != DEFAULT, m.name))


def resolve(model: str | Path | None) -> Path:
    """A bundled model's name, a checkpoint file, or a folder holding model.pt -> the checkpoint's path.

    None is the default model. A path that exists wins over a name, so `--model english` finds a folder
    called english in the current folder first; `--model ./x.pt` is always a path.
    """
    name = DEFAULT if model is None else str(model)
    path = Path(name)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / "model.pt").is_file():
            return path / "model.pt"
        raise InputError(f"{path}: a folder without model.pt; --model takes a model name, a checkpoint file, "
                         "or a folder holding model.pt")
    bundled = {m.name: m.path for m in available()}
    if name in bundled:
        return bundled[name]
    looks_like_path = any(sep in name for sep in "/\\") or path.suffix
    if model is None:
        raise InputError(f"the default model {DEFAULT!r} is not installed in {models_dir()}; pass --model "
                         "CHECKPOINT" + (f" or a bundled model ({', '.join(bundled)})" if bundled else ""))
    raise InputError(f"{name}: no such " + ("checkpoint file" if looks_like_path else "model") +
                     (f"; bundled models: {', '.join(bundled)}" if bundled else "; no model is bundled") +
                     ", or a checkpoint path")
