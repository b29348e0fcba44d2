"""A training run killed with SIGKILL at random points and resumed ends where an uninterrupted one does."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asr.data import Utterance, write_manifest

REPO = Path(__file__).resolve().parents[1]
AN4 = REPO.parent / "shared" / "data" / "an4"
EPOCHS = 30  # 2 batches an epoch: 60 optimizer steps


@pytest.fixture
def manifest(tmp_path) -> Path:
    if not AN4.is_dir():
        pytest.skip(f"real AN4 audio not found at {AN4}")
    from asr.audio import audio_duration

    utts = []
    for uid, text in [("cen2-fash-b", "A M Y"), ("an253-fash-b", "GO")]:
        audio = AN4 / "wav" / "an4_clstk" / "fash" / f"{uid}.sph"
        utts.append(Utterance(uid, str(audio), audio_duration(audio), text, "fash"))
    path = tmp_path / "two.jsonl"
    write_manifest(path, utts)
    return path


def _command(manifest: Path, out: Path) -> list[str]:
    # One utterance a batch (the budget is below either duration), one thread: deterministic.
    return [sys.executable, "-m", "asr", "train", "--train", str(manifest), "--out", str(out), "--preset", "tiny",
            "--epochs", str(EPOCHS), "--max-batch-seconds", "1", "--workers", "0", "--threads", "1",
            "--save-every", "1", "--keep-last", "2", "--warmup-steps", "5"]


def _step(out: Path) -> int:
    try:
        return torch.load(out / "last.pt", weights_only=True)["train_state"]["progress"]["step"]
    except (FileNotFoundError, KeyError):
        return -1


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_killed_and_resumed_run_matches_an_uninterrupted_one(manifest, tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(_command(manifest, whole), check=True, capture_output=True, timeout=300)

    cut = tmp_path / "cut"
    rng = random.Random(0)
    kills = 0
    for attempt in range(4):
        proc = subprocess.Popen(_command(manifest, cut) + (["--resume"] if attempt else []),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = max(_step(cut), 0) + rng.randint(3, 12)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _step(cut) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert not list(cut.glob(".*.tmp")) or proc.returncode == -signal.SIGKILL
        torch.load(cut / "last.pt", weights_only=True)  # never half-written
    assert kills >= 2, "the run finished before it could be killed: make it longer"
    subprocess.run(_command(manifest, cut) + ["--resume"], check=True, capture_output=True, timeout=300)

    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(cut / "last.pt", weights_only=True)
    assert a["train_state"]["progress"]["step"] == b["train_state"]["progress"]["step"] == 2 * EPOCHS
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], tensor, rtol=1e-5, atol=1e-6)
    losses_a = [r["train_loss"] for r in _records(whole)]
    losses_b = [r["train_loss"] for r in _records(cut)]
    assert len(losses_b) == EPOCHS  # no epoch logged twice or lost
    assert losses_b == pytest.approx(losses_a, rel=1e-5)
    assert len(list(cut.glob("step-*.pt"))) == 2  # --keep-last
