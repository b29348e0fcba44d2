"""The bundled models, by name: where they are installed, what each is, and NAME-or-PATH resolution.

The repository's top-level `models/` folder installs as the package `asr.models` (pyproject.toml maps it),
so a plain `pip install .` or a wheel carries the models and an editable install reads them in place. Each
model is a folder `models/<name>/` with `model.pt`, its LM files, `MODEL.md` (the model card) and
`card.json`, the few facts `asr models` lists without loading any weights. A model may also hold its export
for the torch-free runtime (`model.json`, `encoder.onnx`, `mel_filters.npy`, sharing the LM files): the
runtime's distribution installs those without `model.pt` (`resolve_export`).
"""

from __future__ import annotations

import importlib.util
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


def resolve_export(model: str | Path | None) -> Path:
    """A bundled model's name, or an exported folder (`asr export`) -> the folder the runtime reads.

    None is the default model. A folder that exists wins over a name, as in `resolve`; whether it holds an
    export is `asr.runtime.bundle.read`'s to say."""
    name = DEFAULT if model is None else str(model)
    path = Path(name)
    if path.is_dir():
        return path
    folder = models_dir() / name
    if not any(sep in name for sep in "/\\") and (folder / "model.json").is_file():
        return folder
    names = sorted(p.parent.name for p in models_dir().glob("*/model.json")) if models_dir().is_dir() else []
    return _missing_export(name, model is None, names)


def _missing_export(name: str, default: bool, names: list[str]):
    known = f"; bundled exports: {', '.join(names)}" if names else "; no model is bundled with an export"
    if default:
        raise InputError(f"the default model {DEFAULT!r} has no export installed in {models_dir()}{known}; pass "
                         "--model EXPORTED_FOLDER (asr export writes one)")
    raise InputError(f"{name}: no such exported model folder or bundled model{known}")


def engine_for(model: str | Path | None, engine: str = "auto") -> str:
    """What runs `model` (a name, checkpoint or folder, as `resolve` takes it): "pytorch" or "onnx" (the
    torch-free runtime, over an export). `engine` "auto" picks the checkpoint where there is one and torch is
    installed, else the export: the full install runs `english` in PyTorch, the runtime's install (no torch,
    no model.pt) runs its export, and a folder from `asr export` runs in the runtime."""
    if engine != "auto":
        return engine
    path = Path(DEFAULT if model is None else str(model))
    if path.is_file():
        return "pytorch"
    folder = path if path.is_dir() else models_dir() / path.name
    has_export, has_checkpoint = (folder / "model.json").is_file(), (folder / "model.pt").is_file()
    if has_export and (not has_checkpoint or importlib.util.find_spec("torch") is None):
        return "onnx"
    return "pytorch"
