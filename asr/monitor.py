"""Watching a training run: collapse checks, a metrics log (JSONL, plus TensorBoard when installed), curves, progress.

Plain functions and one small class for the training loop to call; none of them changes what is trained.
TensorBoard and matplotlib are optional: without them the run still writes metrics.jsonl and says once, at INFO,
what it left out.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from asr.atomic import atomic_open, make_dirs
from asr.errors import InputError
from asr.text import BLANK

log = logging.getLogger(__name__)

COLLAPSE_BLANK_RATIO = 0.98  # a healthy CTC model is mostly blank too (~60-90 % of frames), so only near-all counts
DOMINANT_SHARE = 0.9  # this share of non-empty hypotheses being one string means the model ignores its input
MIN_HYPOTHESES = 3  # with fewer non-empty hypotheses, identical outputs are unremarkable
_ADVICE = "check the learning rate, the data (asr doctor) or train longer"
# CTC first learns that blank is the likeliest output, and its outputs stay all blank for a few hundred steps
# (on AN4, 40 s batches: 12 epochs); a run shorter than this may end before it leaves that stage.
FEW_STEPS = 1000


def blank_ratio(log_probs: torch.Tensor, lengths: torch.Tensor) -> float:
    """Fraction of the valid frames whose argmax is the blank: log_probs (B, T, V), row b valid up to lengths[b]."""
    best = log_probs.detach().argmax(dim=-1)  # (B, T)
    t = best.shape[1]
    valid = torch.arange(t, device=best.device)[None, :] < lengths.to(best.device)[:, None]  # padding is not output
    n_valid = int(valid.sum())
    if n_valid == 0:
        return 0.0
    return int(((best == BLANK) & valid).sum()) / n_valid


def collapse_warning(hyps_texts: list[str], blank_ratio: float, cause: str | None = None) -> str | None:
    """A one-line warning when the outputs have collapsed (all blank, one string, one symbol), else None.

    `blank_ratio` is the one of `blank_ratio()` over the same batches. The usual CTC failure is the all-blank
    plateau; the rarer one is a model that says the same thing whatever it hears. `cause` (from
    `collapse_cause`) names the likely reason for an all-blank model in place of the general advice.
    """
    texts = [t.strip() for t in hyps_texts]
    nonempty = [t for t in texts if t]
    if (texts and not nonempty) or blank_ratio > COLLAPSE_BLANK_RATIO:
        return (f"outputs collapsed to blank: {len(texts) - len(nonempty)}/{len(texts)} hypotheses empty, "
                f"{blank_ratio:.1%} of frames blank; " + (f"likely cause: {cause}" if cause else _ADVICE))
    if len(nonempty) < MIN_HYPOTHESES:
        return None
    symbols = set("".join(nonempty).replace(" ", ""))
    if len(symbols) == 1:
        return (f"outputs collapsed to one symbol: all {len(nonempty)} non-empty hypotheses repeat "
                f"{next(iter(symbols))!r}; {_ADVICE}")
    text, count = Counter(nonempty).most_common(1)[0]
    if count >= DOMINANT_SHARE * len(nonempty):
        return (f"outputs collapsed to one hypothesis: {count}/{len(nonempty)} non-empty hypotheses are "
                f"{_clip(text)!r}; {_ADVICE}")
    return None


def collapse_cause(step: int, total_steps: int, warmup_steps: int, steps_per_epoch: int, lr: float,
                   peak_lr: float) -> str | None:
    """What the schedule says about an all-blank model after `step` optimizer steps, or None when it says
    nothing: the learning rate still below its peak, or a run too short to leave the all-blank stage."""
    if step < warmup_steps:
        return (f"the learning rate has not reached its peak yet ({lr:.1e} of {peak_lr:.1e}, step {step} of "
                f"{warmup_steps} warm-up steps)")
    if total_steps < FEW_STEPS:
        return (f"too few optimizer steps: this run has {total_steps} ({steps_per_epoch} an epoch), and CTC "
                f"often needs hundreds before it outputs more than blanks; train more epochs or lower "
                f"--max-batch-seconds (more, smaller batches an epoch)")
    return None


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "..."


class MetricsLog:
    """Append records to RUNDIR/metrics.jsonl; mirror numeric fields to RUNDIR/tensorboard when it is installed.

    Each record gets a "time" field (Unix seconds) unless it has one. TensorBoard tags come from the key:
    "dev_wer" -> "dev/wer", "train_loss" -> "train/loss", anything else -> "train/<key>"; the x-axis is the
    record's "step".
    """

    def __init__(self, run_dir: str | Path):
        run_dir = make_dirs(run_dir)
        self.path = run_dir / "metrics.jsonl"
        self._writer = _tensorboard_writer(run_dir / "tensorboard")

    def log(self, record: dict) -> dict:
        record = {**record}
        record.setdefault("time", round(time.time(), 3))
        # Opened per record and appended to: a resumed run continues the same file, a killed one loses nothing.
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if key not in ("step", "time") and _is_number(value):
                    self._writer.add_scalar(_tag(key), value, global_step=record.get("step"))
            self._writer.flush()  # records are per epoch or every N steps: cheap, and TensorBoard shows them live
        return record

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_said_no_tensorboard = False


def _tensorboard_writer(folder: Path):
    global _said_no_tensorboard
    try:  # torch.utils.tensorboard raises ImportError itself when the tensorboard package is missing
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _said_no_tensorboard:
            log.info("tensorboard is not installed: metrics go to metrics.jsonl only (pip install tensorboard)")
            _said_no_tensorboard = True
        return None
    return SummaryWriter(log_dir=str(folder))


def _tag(key: str) -> str:
    for prefix in ("train", "dev"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return f"train/{key}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # True is an int, not a metric


def plot_curves(metrics_jsonl: str | Path, out_png: str | Path) -> Path | None:
    """Training loss, dev WER/CER and the learning rate against step, as a three-panel PNG; None (logged)
    without matplotlib.

    Records without "step" or the plotted field are skipped, and so are unreadable lines (the last line of a
    killed run may be half written).
    """
    try:  # the Figure API with the Agg canvas: no pyplot, so no global backend or figure state is touched
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.info("matplotlib is not installed: no training curves plotted (pip install matplotlib)")
        return None
    records = _read_records(Path(metrics_jsonl))
    loss = _series(records, "train_loss")
    wer, cer = _series(records, "dev_wer"), _series(records, "dev_cer")
    lr = _series(records, "lr")

    fig = Figure(figsize=(15, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_err, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(*loss, marker=".", label="train loss")
    if loss[1] and min(loss[1]) > 0:
        ax_loss.set_yscale("log")  # CTC loss falls by orders of magnitude; linear hides the late progress
    ax_loss.set(title="training loss", xlabel="step", ylabel="CTC loss")
    ax_err.plot(wer[0], [100 * v for v in wer[1]], marker=".", label="dev WER")
    ax_err.plot(cer[0], [100 * v for v in cer[1]], marker=".", label="dev CER")
    ax_err.set(title="dev error rates", xlabel="step", ylabel="%")
    ax_err.legend()
    # The rate at each record's step (epoch ends): shows whether warm-up reached the peak before the decay.
    ax_lr.plot(*lr, marker=".", label="learning rate")
    ax_lr.set(title="learning rate", xlabel="step", ylabel="AdamW learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in (ax_loss, ax_err, ax_lr):
        ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    out_png = Path(out_png)
    with atomic_open(out_png, "wb") as f:
        f.write(buf.getvalue())
    return out_png


def _read_records(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(f"{path}: cannot read the metrics ({e.strerror or e})") from None
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in records
              if _is_number(r.get("step")) and _is_number(r.get(key)) and math.isfinite(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def progress(total_steps: int, epoch: int, disable: bool | None = None) -> tqdm:
    """A progress bar over one epoch's steps. disable=None: shown only on a terminal, not in logs or CI."""
    return tqdm(total=total_steps, desc=f"epoch {epoch}", unit="step", disable=disable, dynamic_ncols=True,
                leave=False)


def progress_postfix(loss: float, lr: float, audio_seconds: float, elapsed: float) -> dict:
    """What the bar shows beside tqdm's own rate and ETA: loss, learning rate, seconds of audio per second."""
    speed = audio_seconds / elapsed if elapsed > 0 else 0.0
    return {"loss": f"{loss:.3f}", "lr": f"{lr:.2e}", "audio-s/s": f"{speed:.0f}"}
