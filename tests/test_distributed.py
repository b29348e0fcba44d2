"""Two CPU processes under torchrun (gloo) train like one process with the same global batch, with or without
gradient accumulation, resume mid-epoch where an uninterrupted run would be, and skip unreadable batches together."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.data import Utterance, read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]
AN4 = REPO.parent / "shared" / "data" / "an4" / "wav" / "an4_clstk"
UTTERANCES = [("cen2-fash-b", "A M Y"), ("an253-fash-b", "GO"), ("an251-fash-b", "YES"), ("cen7-fash-b",
              "TWO SIX EIGHT FOUR FOUR ONE EIGHT")]
# `train.py`, keeping a copy of the mid-epoch last.pt of step 3: what a run killed right after it would leave.
KEEP_MID_EPOCH_CHECKPOINT = """
import shutil, sys
import asr.train
from asr.cli import main

save = asr.train._save_numbered_checkpoint

def save_and_keep(out, kind, number, *args):
    save(out, kind, number, *args)
    if (kind, number) == ("step", 3):
        shutil.copy(out / "last.pt", out / "step-3-last.pt")

asr.train._save_numbered_checkpoint = save_and_keep
sys.exit(main(["train", *sys.argv[1:]]))
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    if not AN4.is_dir():
        pytest.skip(f"real AN4 audio not found at {AN4}")
    from asr.audio import audio_duration

    utts = [Utterance(uid, str(AN4 / "fash" / f"{uid}.sph"), audio_duration(AN4 / "fash" / f"{uid}.sph"), text, "fash")
            for uid, text in UTTERANCES]
    path = tmp_path_factory.mktemp("data") / "four.jsonl"
    write_manifest(path, utts)
    return path


@pytest.fixture(scope="module")
def two_ranks(manifest, tmp_path_factory) -> Path:
    """An uninterrupted two-rank run, with a checkpoint every step; the tests below compare with it."""
    out = tmp_path_factory.mktemp("ddp")
    script = out / "keep_mid_epoch_checkpoint.py"
    script.write_text(KEEP_MID_EPOCH_CHECKPOINT)
    proc = _torchrun(script, *_args(manifest, out / "run"), "--save-every", "1",
                     env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "run"


def _args(manifest, out):
    # One utterance a batch, so an epoch is 4 batches: 2 ranks x 2, or 1 process x 4 accumulated in pairs.
    return ["--train", str(manifest), "--out", str(out), "--preset", "tiny", "--epochs", "3", "--workers", "0",
            "--threads", "1", "--max-batch-seconds", "1", "--warmup-steps", "2", "--no-spec-augment"]


def _torchrun(script, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def _single(*args) -> None:
    subprocess.run([sys.executable, "train.py", *args], cwd=REPO, check=True, capture_output=True, timeout=300)


def _assert_same_weights(a: dict, b: dict, **tolerance) -> None:
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(tensor, b["state_dict"][name], **tolerance)


def test_two_ranks_match_one_process_with_the_same_global_batch(manifest, two_ranks, tmp_path):
    single = tmp_path / "single"
    _single(*_args(manifest, single), "--accumulate", "2")

    log = (two_ranks / "train.log").read_text()
    assert "weights identical on all 2 ranks" in log
    assert log.count("epoch 1:") == 1  # only rank 0 logs and writes
    a = torch.load(two_ranks / "last.pt", weights_only=True)
    b = torch.load(single / "last.pt", weights_only=True)
    assert a["train_state"]["progress"]["step"] == b["train_state"]["progress"]["step"] == 6
    _assert_same_weights(a, b, rtol=1e-4, atol=1e-5)


def test_two_ranks_accumulating_without_sync_match_one_process(manifest, tmp_path):
    # Each rank's first micro-batch of a step runs under DDP's no_sync(), the second all-reduces both.
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    proc = _torchrun("train.py", *_args(manifest, ddp), "--accumulate", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _single(*_args(manifest, single), "--accumulate", "4")

    assert "weights identical on all 2 ranks" in (ddp / "train.log").read_text()
    a = torch.load(ddp / "last.pt", weights_only=True)
    b = torch.load(single / "last.pt", weights_only=True)
    assert a["train_state"]["progress"]["step"] == b["train_state"]["progress"]["step"] == 3
    _assert_same_weights(a, b, rtol=1e-4, atol=1e-5)


def test_two_ranks_resumed_mid_epoch_log_the_loss_of_all_ranks(manifest, two_ranks, tmp_path):
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(two_ranks / "step-3-last.pt", cut / "last.pt")
    shutil.copy(two_ranks / "metrics.jsonl", cut / "metrics.jsonl")  # the resumed run forgets epochs 2 and 3
    progress = torch.load(cut / "last.pt", weights_only=True)["train_state"]["progress"]
    assert (progress["epoch"], progress["batch"], progress["step"]) == (1, 1, 3)  # halfway through epoch 2
    assert progress["epoch_batches"] == 2  # one from each rank

    proc = _torchrun("train.py", *_args(manifest, cut), "--save-every", "1", "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "weights identical on all 2 ranks" in (cut / "train.log").read_text()
    losses = [[json.loads(line)["train_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
              for out in (two_ranks, cut)]
    assert len(losses[1]) == 3 and losses[1] == pytest.approx(losses[0], rel=1e-6)
    _assert_same_weights(torch.load(two_ranks / "last.pt", weights_only=True),
                         torch.load(cut / "last.pt", weights_only=True), rtol=1e-5, atol=1e-6)


def test_two_ranks_accumulating_skip_together_a_batch_that_is_empty_on_one_rank(manifest, tmp_path):
    # A missing file empties its batch on one rank. If the other rank ran that forward anyway (DDP's forward can
    # itself communicate), or all-reduced its backward, the two would wait on different collectives.
    five = tmp_path / "five.jsonl"
    write_manifest(five, [*read_manifest(manifest)[0], Utterance("gone", str(tmp_path / "gone.wav"), 0.5, "GO")])
    out = tmp_path / "ddp"
    proc = _torchrun("train.py", *_args(five, out), "--accumulate", "2", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert "weights identical on all 2 ranks" in log and "1 training file could not be read and was skipped" in log


def test_two_ranks_with_dropout_resume_each_with_its_own_random_state(manifest, tmp_path):
    # The ranks' batches differ in length, so dropout draws differ in number and their random states part ways:
    # each rank must get its own back, or the resumed run's masks (and weights) leave the uninterrupted run's.
    script = tmp_path / "keep_mid_epoch_checkpoint.py"
    script.write_text(KEEP_MID_EPOCH_CHECKPOINT)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = _torchrun(script, *_args(manifest, whole), "--dropout", "0.3", "--save-every", "1", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cut.mkdir()
    shutil.copy(whole / "step-3-last.pt", cut / "last.pt")
    states = torch.load(cut / "last.pt", weights_only=True)["train_state"]["rng_states"]
    assert len(states) == 2 and not torch.equal(states[0]["cpu"], states[1]["cpu"])
    proc = _torchrun("train.py", *_args(manifest, cut), "--dropout", "0.3", "--save-every", "1", "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_weights(torch.load(whole / "last.pt", weights_only=True),
                         torch.load(cut / "last.pt", weights_only=True), rtol=1e-5, atol=1e-6)


def test_a_worker_leaves_with_its_code_and_its_output_flushed(tmp_path):
    # `distributed.leave` skips the interpreter's shutdown (see its docstring): nothing printed or logged,
    # even without a newline into a block-buffered pipe, may be lost, and torchrun must see the exit code.
    script = tmp_path / "worker.py"
    script.write_text(
        "import logging, sys\n"
        "from asr import distributed\n"
        f"handler = logging.FileHandler({str(tmp_path / 'w.log')!r})\n"
        "logging.getLogger('asr').addHandler(handler)\n"
        "logging.getLogger('asr').warning('logged')\n"
        "print('printed', end='')\n"
        "sys.stderr.write('to stderr')\n"
        "distributed.leave(3)\n"
        "print('not reached')\n")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "printed", "to stderr")
    assert (tmp_path / "w.log").read_text() == "logged\n"
