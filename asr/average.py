"""Checkpoint averaging: the element-wise mean of several checkpoints' weights, written as one checkpoint;
or an ensemble: the checkpoints kept side by side in one file, their outputs averaged when decoding.

Averaging the last few checkpoints of a run (e.g. the last epochs) usually gives a slightly better model
than any one of them. Every input must describe the same model: the same model_config, tokenizer and
feature settings (config and mean/std), else the average is meaningless and InputError says which file
differs and how.
"""

from __future__ import annotations

from pathlib import Path

import torch

from asr.errors import InputError
from asr.model import (
    ENSEMBLE_VERSION,
    atomic_torch_save,
    checkpoint_weights,
    created_now,
    read_checkpoint,
    single_model_weights,
)


def average_checkpoints(paths: list[str | Path], dtype: torch.dtype | None = None) -> dict:
    """-> a checkpoint dict (the first input's structure, without train_state) holding the mean weights.

    Floating-point tensors are averaged in float64 and cast back to their dtype, or to `dtype` when given
    (summing many float32 or float16 tensors in their own precision loses accuracy); other tensors
    (counters) come from the last file. `dtype=torch.float16` halves the file; `load_checkpoint` computes in
    float32 whatever the stored precision (on the AN4 models it changed one word of 677: MODEL.md).
    """
    paths, states = _read_matching(paths, "averaged")
    weights = [single_model_weights(state, path, "averaging") for path, state in zip(paths, states, strict=True)]
    first = states[0]
    sums: dict[str, torch.Tensor] = {}
    for state_dict in weights:
        for name, tensor in state_dict.items():
            if tensor.is_floating_point():
                sums[name] = sums[name] + tensor.double() if name in sums else tensor.double().clone()
    last = weights[-1]
    averaged = {name: (sums[name] / len(states)).to(dtype or tensor.dtype) if tensor.is_floating_point() else last[name]
                for name, tensor in weights[0].items()}

    result = {k: v for k, v in first.items() if k not in ("train_state", "state_dict", "metadata")}
    result["state_dict"] = averaged
    result["metadata"] = _combined_metadata(paths, states, "averaged")
    return result


def ensemble_checkpoints(paths: list[str | Path], dtype: torch.dtype | None = None) -> dict:
    """-> an ensemble checkpoint dict: the inputs' weights as `members` (an ensemble input adds all of its
    own), cast to `dtype` when given, in one file that `load_checkpoint` turns into an `Ensemble`.

    Weight averaging (a "soup") needs inputs close enough that their mean is itself a good model; an
    ensemble does not, and costs one forward pass per member when decoding.
    """
    paths, states = _read_matching(paths, "joined in an ensemble")
    members = [weights for state in states for weights in checkpoint_weights(state)]
    if dtype is not None:
        members = [{k: v.to(dtype) if v.is_floating_point() else v for k, v in m.items()} for m in members]
    first = states[0]
    result = {k: v for k, v in first.items() if k not in ("train_state", "state_dict", "members", "metadata")}
    result.update(version=ENSEMBLE_VERSION, members=members)
    result["metadata"] = _combined_metadata(paths, states, "ensemble")
    return result


# Metadata that describes one input and would read as the combined file's if it were carried over from
# the first: its dev scores (measured on that input alone) and what an earlier average or ensemble recorded.
_PER_INPUT = ("dev_wer", "dev_cer", "averaged_from", "averaged_steps", "averaged_dev_wer",
              "ensemble_of", "ensemble_steps", "ensemble_dev_wer")


def _combined_metadata(paths: list[Path], states: list[dict], kind: str) -> dict:
    """The first input's metadata (training config, data, code version) less what describes it alone, plus
    per-input lists: `averaged_from`/`ensemble_of` (the files), `*_steps`, and `*_dev_wer` where known."""
    metadata = {k: v for k, v in states[0].get("metadata", {}).items() if k not in _PER_INPUT}
    inputs = [s.get("metadata", {}) for s in states]
    metadata["averaged_from" if kind == "averaged" else "ensemble_of"] = [str(p) for p in paths]
    metadata[f"{kind}_steps"] = [m.get("steps") for m in inputs]
    if any(m.get("dev_wer") is not None for m in inputs):
        metadata[f"{kind}_dev_wer"] = [m.get("dev_wer") for m in inputs]
    metadata["created"] = created_now()
    return metadata


def write_average(paths: list[str | Path], out: str | Path, dtype: torch.dtype | None = None,
                  ensemble: bool = False) -> dict:
    """Average `paths` (or with `ensemble`, join them) into the checkpoint file `out`, written atomically;
    -> the checkpoint dict."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; --out names the checkpoint file to write, e.g. {out / 'avg.pt'}")
    state = (ensemble_checkpoints if ensemble else average_checkpoints)(paths, dtype)
    atomic_torch_save(state, out)
    return state


def _read_matching(paths: list[str | Path], purpose: str) -> tuple[list[Path], list[dict]]:
    """Read at least 2 checkpoints that describe the same model; InputError naming the first that does not."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise InputError(f"an average or an ensemble needs at least 2 checkpoints, got {len(paths)}")
    states = [read_checkpoint(p) for p in paths]
    for path, state in zip(paths[1:], states[1:], strict=True):
        difference = _difference(states[0], state)
        if difference:
            raise InputError(f"{path}: cannot be {purpose} with {paths[0]}: {difference}")
    return paths, states


def find_last_checkpoints(run_dir: str | Path, k: int) -> list[Path]:
    """The `k` checkpoints in RUNDIR/step-*.pt and RUNDIR/epoch-*.pt with the most training steps, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder")
    if k < 2:
        raise InputError(f"--last {k}: averaging needs at least 2 checkpoints")
    found = sorted({*run_dir.glob("step-*.pt"), *run_dir.glob("epoch-*.pt")})
    if len(found) < k:
        raise InputError(f"{run_dir}: --last {k} asks for {k} checkpoints, found {len(found)} "
                         f"(step-*.pt, epoch-*.pt)")
    steps = []
    for path in found:
        step = read_checkpoint(path).get("metadata", {}).get("steps")
        if not isinstance(step, int):
            raise InputError(f"{path}: metadata has no training step count")
        steps.append((step, path))
    return [path for _, path in sorted(steps)[-k:]]


def _difference(a: dict, b: dict) -> str | None:
    """What makes checkpoint b's model differ from a's, in a few words; None when they match."""
    if a.get("model_config") != b.get("model_config"):
        keys = sorted({*a.get("model_config", {}), *b.get("model_config", {})})
        diff = [f"{k} {a['model_config'].get(k)} vs {b['model_config'].get(k)}" for k in keys
                if a["model_config"].get(k) != b["model_config"].get(k)]
        return "model_config differs (" + ", ".join(diff) + ")"
    if a.get("tokenizer") != b.get("tokenizer"):
        return "tokenizer differs"
    fa, fb = a.get("features", {}), b.get("features", {})
    if fa.get("config") != fb.get("config"):
        return "feature config differs"
    for key in ("mean", "std"):
        ta, tb = fa.get(key), fb.get(key)
        if (ta is None) != (tb is None) or (ta is not None and ta.shape != tb.shape):
            return f"feature {key} differs"
        if ta is not None and not torch.equal(ta, tb):
            # Fine-tuning (--init) keeps its start's statistics, and a run from scratch estimates its own.
            return (f"feature {key} differs: the two were trained from different starts, whose weights do not "
                    "average and whose CTC spikes fall on different frames (see `asr average --help`)")
    wa, wb = (checkpoint_weights(s)[0] for s in (a, b))
    if wa.keys() != wb.keys() or any(wa[k].shape != wb[k].shape for k in wa):
        return "state_dict tensors differ in names or shapes"
    return None
