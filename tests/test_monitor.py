import json
import logging

import pytest
import torch

from asr import monitor
from asr.monitor import (
    MetricsLog,
    blank_ratio,
    collapse_cause,
    collapse_warning,
    plot_curves,
    progress,
    progress_postfix,
)


def _emissions(paths: list[list[int]], vocab: int = 5) -> torch.Tensor:
    """Log-probs (B, T, V) whose argmax path in row b is paths[b] (rows padded with a non-blank symbol)."""
    t = max(len(p) for p in paths)
    lp = torch.full((len(paths), t, vocab), -10.0)
    for b, path in enumerate(paths):
        for i in range(t):
            lp[b, i, path[i] if i < len(path) else 3] = -0.01  # padding says "3": it must not count
    return lp.log_softmax(-1)


def test_blank_ratio_counts_valid_frames_only():
    lp = _emissions([[0, 0, 1, 0], [0, 2]])
    assert blank_ratio(lp, torch.tensor([4, 2])) == 4 / 6
    assert blank_ratio(lp, torch.tensor([2, 1])) == 1.0  # only the blank frames are within the lengths
    assert blank_ratio(lp, torch.tensor([0, 0])) == 0.0  # no frames: nothing to report


def test_collapse_all_blank():
    message = collapse_warning(["", " ", ""], 0.9)
    assert message.startswith("outputs collapsed to blank: 3/3 hypotheses empty")
    assert "learning rate" in message and "asr doctor" in message and "train longer" in message
    assert collapse_warning(["yes", "no", "stop"], 0.99).startswith("outputs collapsed to blank")  # nearly all blank


def test_collapse_one_symbol_or_one_hypothesis():
    assert "one symbol" in collapse_warning(["e", "ee e", "", "eee"], 0.8)
    message = collapse_warning(["the"] * 9 + ["a cat"], 0.8)
    assert "one hypothesis: 9/10" in message and "'the'" in message


def test_collapse_healthy_and_too_few_to_tell():
    assert collapse_warning(["enter eight", "go", "yes", "the the", "no"], 0.7) is None
    assert collapse_warning(["a", "a"], 0.7) is None  # two identical short answers say nothing
    assert collapse_warning([], 0.5) is None


def test_metrics_log_writes_jsonl(tmp_path):
    with MetricsLog(tmp_path / "run") as m:
        m.log({"epoch": 1, "step": 10, "train_loss": 3.5, "lr": 1e-3})
        m.log({"epoch": 2, "step": 20, "train_loss": 2.0, "dev_wer": 0.5, "time": 123.0})
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["train_loss"] == 3.5 and isinstance(records[0]["time"], float)
    assert records[1]["dev_wer"] == 0.5 and records[1]["time"] == 123.0  # a caller's time is kept
    with MetricsLog(tmp_path / "run") as m:  # a resumed run appends
        m.log({"step": 30})
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3


def test_metrics_log_without_tensorboard_says_so_once(tmp_path, monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("TensorBoard logging requires TensorBoard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.setattr(monitor, "_said_no_tensorboard", False)
    with caplog.at_level(logging.INFO, logger="asr.monitor"):
        for name in ("a", "b"):
            with MetricsLog(tmp_path / name) as m:
                m.log({"step": 1, "train_loss": 1.0})
    assert sum("tensorboard is not installed" in r.message for r in caplog.records) == 1
    assert not (tmp_path / "a" / "tensorboard").exists()


def test_metrics_log_writes_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLog(tmp_path) as m:
        m.log({"epoch": 1, "step": 10, "train_loss": 3.5, "lr": 1e-3, "dev_wer": 0.5, "note": "x", "ok": True})
        m.log({"epoch": 2, "step": 20, "train_loss": 2.0, "lr": 5e-4, "dev_wer": 0.25})
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/epoch", "train/loss", "train/lr", "dev/wer"}
    assert [(e.step, e.value) for e in events.Scalars("dev/wer")] == [(10, 0.5), (20, 0.25)]


def test_plot_curves_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join([
        json.dumps({"step": 10, "train_loss": 50.0, "dev_wer": 1.0, "dev_cer": 0.9}),
        json.dumps({"step": 20, "train_loss": 5.0}),  # no dev fields: only the loss panel gets it
        json.dumps({"epoch": 3}),  # no step: skipped
        json.dumps({"step": 30, "train_loss": 1.0, "dev_wer": 0.3, "dev_cer": 0.1}),
        '{"step": 40, "train_lo',  # a killed run's half line
    ]) + "\n")
    out = plot_curves(metrics, tmp_path / "plots" / "curves.png")
    assert out == tmp_path / "plots" / "curves.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # no temporary file left behind


def test_progress_postfix_and_bar(capsys):
    assert progress_postfix(1.23456, 2e-3, 300.0, 2.0) == {"loss": "1.235", "lr": "2.00e-03", "audio-s/s": "150"}
    assert progress_postfix(float("nan"), 0.0, 0.0, 0.0)["audio-s/s"] == "0"  # the first step: no time yet
    with progress(100, epoch=3, disable=False) as bar:
        bar.set_postfix(progress_postfix(1.0, 1e-3, 10.0, 1.0))
        bar.update(5)
        assert bar.total == 100 and bar.n == 5
    shown = capsys.readouterr().err
    assert "epoch 3" in shown and "/100" in shown and "audio-s/s=10" in shown
    with progress(100, epoch=1) as bar:  # pytest's stderr is no terminal: no bar
        assert bar.disable


def test_plot_curves_draws_the_learning_rate(tmp_path, monkeypatch):
    """A short run's rate that never reached its peak was invisible in curves.png (issue 30)."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))[1])
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "train_loss": 3.0, "lr": lr}) + "\n"
                               for s, lr in ((2, 6.7e-4), (4, 1.3e-3), (6, 2e-3))))
    plot_curves(metrics, tmp_path / "curves.png")
    panels = {ax.get_title(): ax for ax in drawn[0].axes}
    line = panels["learning rate"].get_lines()[0]
    assert list(line.get_xdata()) == [2, 4, 6] and list(line.get_ydata()) == [6.7e-4, 1.3e-3, 2e-3]


def test_collapse_warning_names_the_schedule_as_the_likely_cause():
    """20 utterances, 2 steps an epoch: the default 300 warm-up steps kept the rate from its peak (issue 30)."""
    warming = collapse_cause(step=60, total_steps=60 * 50, warmup_steps=300, steps_per_epoch=2, lr=4e-4,
                             peak_lr=2e-3)
    assert "not reached its peak" in warming and "4.0e-04 of 2.0e-03" in warming and "60 of 300" in warming
    short = collapse_cause(step=60, total_steps=60, warmup_steps=6, steps_per_epoch=2, lr=1e-3, peak_lr=2e-3)
    assert "too few optimizer steps" in short and "60 (2 an epoch)" in short
    assert collapse_cause(step=2000, total_steps=5000, warmup_steps=300, steps_per_epoch=100, lr=1e-3,
                          peak_lr=2e-3) is None
    message = collapse_warning(["", ""], 1.0, cause=short)
    assert message.startswith("outputs collapsed to blank") and "likely cause: too few optimizer steps" in message
    assert "\n" not in message
