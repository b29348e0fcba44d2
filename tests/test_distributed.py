"""Two CPU processes under torchrun (gloo) train like one process with the same global batch."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.data import Utterance, write_manifest

REPO = Path(__file__).resolve().parents[1]
AN4 = REPO.parent / "shared" / "data" / "an4" / "wav" / "an4_clstk"
UTTERANCES = [("cen2-fash-b", "A M Y"), ("an253-fash-b", "GO"), ("an251-fash-b", "YES"), ("cen7-fash-b",
              "TWO SIX EIGHT FOUR FOUR ONE EIGHT")]


@pytest.fixture
def manifest(tmp_path) -> Path:
    if not AN4.is_dir():
        pytest.skip(f"real AN4 audio not found at {AN4}")
    from asr.audio import audio_duration

    utts = [Utterance(uid, str(AN4 / "fash" / f"{uid}.sph"), audio_duration(AN4 / "fash" / f"{uid}.sph"), text, "fash")
            for uid, text in UTTERANCES]
    path = tmp_path / "four.jsonl"
    write_manifest(path, utts)
    return path


def _args(manifest, out):
    # One utterance a batch, so an epoch is 4 batches: 2 ranks x 2, or 1 process x 4 accumulated in pairs.
    return ["--train", str(manifest), "--out", str(out), "--preset", "tiny", "--epochs", "3", "--workers", "0",
            "--threads", "1", "--max-batch-seconds", "1", "--warmup-steps", "2", "--no-spec-augment"]


def test_two_ranks_match_one_process_with_the_same_global_batch(manifest, tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "train.py", *_args(manifest, ddp)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    subprocess.run([sys.executable, "train.py", *_args(manifest, single), "--accumulate", "2"], cwd=REPO,
                   check=True, capture_output=True, timeout=300)

    log = (ddp / "train.log").read_text()
    assert "weights identical on all 2 ranks" in log
    assert log.count("epoch 1:") == 1  # only rank 0 logs and writes
    a = torch.load(ddp / "last.pt", weights_only=True)
    b = torch.load(single / "last.pt", weights_only=True)
    assert a["train_state"]["progress"]["step"] == b["train_state"]["progress"]["step"] == 6
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(tensor, b["state_dict"][name], rtol=1e-4, atol=1e-5)
