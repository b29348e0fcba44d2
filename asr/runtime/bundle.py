"""The exported model folder: what `asr export` writes (`asr.export`) and the runtime reads (`read`).

    model.json        the description: format and version, the model's shape, feature settings and
                      normalisation statistics, tokenizer, decoder settings, calibration, provenance
    encoder.onnx      features (B, T, F) float32, lengths (B,) int64 -> log_probs (B, T', V) float32,
                      out_lengths (B,) int64; fp32, or int8 after `asr export --int8`
    mel_filters.npy   (F, n_fft/2+1) float32: the Slaney mel filter bank the checkpoint's features used
    tokenizer.model   the sentencepiece model (BPE models only; characters are listed in model.json)
    <LM>, <lexicon>   the decoder's n-gram LM and lexicon, under their own file names, when it has them

Every path in model.json is a file name in the folder, so the folder can be moved or copied whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.audio import FeatureConfig
from asr.errors import InputError

MANIFEST = "model.json"
FORMAT = "asr-onnx"
VERSION = 1
ENCODER = "encoder.onnx"
MEL_FILTERS = "mel_filters.npy"
SENTENCEPIECE = "tokenizer.model"


def is_bundle(path) -> bool:
    """Whether `path` is an exported model folder (it holds model.json)."""
    return path is not None and Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


@dataclass(frozen=True)
class Bundle:
    """An exported model folder, read and checked: everything the runtime needs but the ONNX session."""

    folder: Path
    encoder: Path
    precision: str  # "fp32" or "int8"
    features: FeatureConfig
    mel: np.ndarray  # (F, n_fft/2+1) float32
    mean: np.ndarray | None  # (F,) float32: the training data's per-bin statistics
    std: np.ndarray | None
    power_floor: float  # added to the mel power before the log
    subsampling: int  # input frames per output frame
    tokenizer: object  # asr.text.CharTokenizer or BPETokenizer
    decoder: dict  # decoder settings (asr.decoding.SETTINGS keys); lm and lexicon are file names in `folder`
    metadata: dict  # the checkpoint's, including `confidence` (calibration) when it has one


def read(folder) -> Bundle:
    """Read an exported model folder; InputError naming the folder or file for anything missing or foreign."""
    from asr.text import tokenizer_from_dict

    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise InputError(f"{folder}: not an exported model folder (no {MANIFEST}; `asr export` writes one)")
    try:
        d = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{manifest}: cannot read it as JSON ({e})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise InputError(f"{manifest}: not an asr export description (format is not {FORMAT!r})")
    if d.get("version", 0) > VERSION:
        raise InputError(f"{manifest}: export version {d['version']} is newer than this code (reads {VERSION})")
    try:
        feats, tok = d["features"], dict(d["tokenizer"])
        encoder = _file(folder, d["encoder"]["file"])
        if tok["kind"] == "bpe":
            tok["model_proto"] = _file(folder, tok.pop("file")).read_bytes()
        mel = np.load(_file(folder, feats["mel_filters"]), allow_pickle=False)
        config = FeatureConfig(**feats["config"])
        stats = [None if feats.get(k) is None else np.asarray(feats[k], dtype=np.float32) for k in ("mean", "std")]
        bundle = Bundle(folder, encoder, d["encoder"].get("precision", "fp32"), config,
                        mel.astype(np.float32), *stats, float(feats["power_floor"]), int(d["encoder"]["subsampling"]),
                        tokenizer_from_dict(tok), dict(d.get("decoder") or {}), dict(d.get("metadata") or {}))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{manifest}: incomplete or malformed description ({type(e).__name__}: {e})") from None
    if bundle.mel.shape != (config.n_mels, config.n_fft // 2 + 1):
        raise InputError(f"{folder / feats['mel_filters']}: mel filter bank of shape {bundle.mel.shape}, expected "
                         f"({config.n_mels}, {config.n_fft // 2 + 1})")
    return bundle


def _file(folder: Path, name: str) -> Path:
    """`folder`/`name` for a plain file name of the description; InputError when it is missing."""
    if Path(name).name != name:
        raise InputError(f"{folder / MANIFEST}: {name!r} is not a file name in the folder")
    path = folder / name
    if not path.is_file():
        raise InputError(f"{path}: missing from the exported model folder (export it again)")
    return path
