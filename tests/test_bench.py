"""The benchmark scripts still run against the code they measure (small sizes, one repeat).

Their numbers are not checked here (BENCHMARKS.md has them, with the commands); only that a change to
the package has not left a script calling something that is gone or whose signature changed.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from asr.data import Utterance, write_manifest

REPO = Path(__file__).resolve().parents[1]
AN4 = REPO.parent / "shared" / "data" / "an4"
EXAMPLES = {"an4-dev-example.wav": "P I T T S B U R G H", "an4-cen7-mdxn-b.wav": "TWO SIX EIGHT FOUR ONE SIX ONE",
            "an4-an162-mfaa-b.wav": "ERASE J N R G FORTY EIGHT"}

# Most scripts build their audio from AN4's recordings.
pytestmark = pytest.mark.skipif(not AN4.is_dir(), reason="the benchmarks build their audio from ../shared/data/an4")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "examples.jsonl"
    wavs = {name: REPO / "examples" / name for name in EXAMPLES}
    write_manifest(path, [Utterance(name, str(wav), soundfile.info(wav).duration, EXAMPLES[name], name[4:-4])
                          for name, wav in wavs.items()])
    return path


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rooms")
    soundfile.write(folder / "r.wav", [1.0, 0.0, 0.5, 0.25], 16000, subtype="FLOAT")
    return folder


@pytest.mark.parametrize("argv", [
    ["bench_breakdown.py", "--seconds", "3", "--repeats", "1"],
    ["bench_batching.py", "--seconds", "20", "--repeats", "1", "--precisions", "fp32", "--batch-sizes", "4"],
    ["bench_decoding.py", "--manifest", "{manifest}", "--lm", "models/an4/lm-6gram.arpa.gz", "--repeats", "1",
     "--beam-sizes", "4", "--beam-thresholds", "12"],
    ["bench_long_audio.py", "--minutes", "0.2"],
    ["bench_long_audio.py", "--minutes", "0.2", "--segment-only"],
    ["bench_long_audio.py", "--minutes", "0.2", "--in-process", "--repeats", "1", "--decoder", "greedy"],
    ["bench_inference.py", "--seconds", "5", "--repeats", "1"],
    ["bench_floor.py", "--presets", "tiny", "--repeats", "1", "--seconds", "1", "--batches", "1", "--sizes", "64"],
    ["bench_features.py", "--seconds", "2", "--repeats", "1"],
    ["bench_precision.py", "--manifest", "{manifest}", "--repeats", "1", "--seconds", "5"],
    ["bench_data.py", "loading", "--manifest", "{manifest}", "--workers", "0", "--repeats", "1"],
    ["bench_data.py", "loading", "--manifest", "{manifest}", "--workers", "0", "--repeats", "1",
     "--rir-dir", "{rooms}"],
    ["bench_data.py", "scan", "--files", "20"],
    ["bench_train.py", "throughput", "--presets", "tiny", "--manifest", "{manifest}", "--steps", "2", "--warmup", "1"],
], ids=lambda argv: " ".join(a for a in argv if not a.startswith("{")))
def test_bench_script_runs(argv, manifest, rooms):
    script, *args = argv
    args = [a.format(manifest=manifest, rooms=rooms) for a in args]
    proc = subprocess.run([sys.executable, f"bench/{script}", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip()
