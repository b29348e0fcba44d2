"""`asr transcribe` for real use: long recordings, subtitles, globs, standard input, resumed batch jobs."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.audio import load_audio
from asr.catalog import models_dir
from asr.metrics import word_errors

REPO = Path(__file__).resolve().parents[1]
AN4 = REPO.parent / "shared" / "data" / "an4"
TIME = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"

AN4_MODEL = models_dir() / "an4" / "model.pt"
pytestmark = pytest.mark.skipif(not AN4_MODEL.is_file() or not AN4.is_dir(),
                                reason="needs the bundled AN4 model and ../shared/data/an4")


def run(*args, stdin=None):
    """`asr ARGS`; transcription of this file's AN4 audio uses the AN4 model unless told otherwise."""
    args = [*args, "--model", "an4"] if args[0] == "transcribe" and "--model" not in args else list(args)
    return subprocess.run([sys.executable, "-m", "asr", *map(str, args)], capture_output=True, cwd=REPO,
                          timeout=600, input=stdin, text=stdin is None)


def _seconds(match) -> float:
    h, m, s, ms = map(int, match)
    return 3600 * h + 60 * m + s + ms / 1000


def _an4_references() -> dict[str, str]:
    refs = {}
    for line in (AN4 / "etc" / "an4_train.transcription").read_text().splitlines():
        text, _, uid = line.rpartition("(")
        refs[uid.strip(") ")] = text.replace("<s>", "").replace("</s>", "").strip()
    return refs


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """About 3 minutes of real AN4 speech, 0.4-1.2 s of background noise (as quiet as AN4's own) between
    utterances, and its transcript."""
    rng = np.random.default_rng(0)
    refs = _an4_references()
    files = sorted((AN4 / "wav" / "an4_clstk").rglob("*.sph"))[::7]
    pieces, words, total = [], [], 0.0
    for f in files:
        wave = load_audio(f)
        gap = (0.0002 * rng.standard_normal(int(rng.uniform(0.4, 1.2) * 16000))).astype(np.float32)
        pieces += [wave, gap]
        words.append(refs[f.stem])
        total += (len(wave) + len(gap)) / 16000
        if total > 180:
            break
    path = tmp_path_factory.mktemp("long") / "long.flac"
    soundfile.write(path, np.concatenate(pieces), 16000)
    return path, " ".join(words), total


def test_a_long_recording_becomes_valid_subtitles(long_recording, tmp_path):
    path, reference, duration = long_recording
    proc = run("transcribe", path, "--format", "all", "--output-dir", tmp_path, "--decoder", "greedy",
               "--batch-size", "3", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "long.json").read_text())
    assert abs(result["duration"] - duration) < 0.05
    assert len(result["segments"]) >= 30  # cut at the pauses between utterances
    assert all(s["end"] - s["start"] <= 30.0 for s in result["segments"])
    words = result["words"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and all(0 <= w["start"] < w["end"] <= duration for w in words)
    assert [w["word"] for w in words] == result["text"].split()
    # Cut at the pauses between utterances: 12.5 % WER (6.1 % on the files one by one, 35 % in 15-30 s
    # chunks, which this model, trained on single utterances, never saw).
    assert word_errors(reference, result["text"]).rate < 0.2

    srt = (tmp_path / "long.srt").read_text()
    blocks = [b.splitlines() for b in srt.strip().split("\n\n")]
    assert [int(b[0]) for b in blocks] == list(range(1, len(blocks) + 1))
    previous_end = 0.0
    for b in blocks:
        start, end = (_seconds(m) for m in re.findall(TIME, b[1]))
        assert re.fullmatch(f"{TIME} --> {TIME}", b[1]) and previous_end <= start < end <= duration + 1
        assert 1 <= len(b[2:]) <= 2 and all(len(line) <= 42 for line in b[2:])
        previous_end = end
    vtt = (tmp_path / "long.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(blocks)
    tsv = (tmp_path / "long.tsv").read_text().splitlines()
    assert tsv[0] == "start\tend\ttext" and len(tsv) == len(result["segments"]) + 1


def test_a_recording_damaged_part_way_keeps_the_transcript_before_the_damage(long_recording, tmp_path):
    path, reference, duration = long_recording
    damaged = tmp_path / "damaged.flac"
    data = path.read_bytes()
    damaged.write_bytes(data[: len(data) * 2 // 3])  # the FLAC decoder fails about 2 minutes in
    proc = run("transcribe", damaged, "--format", "txt,json", "--output-dir", tmp_path / "out",
               "--decoder", "greedy", "--threads", "2")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    problem = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(problem) == 1 and "damaged.flac: cannot read audio after" in problem[0], proc.stderr
    assert "1 of 1 inputs failed" in proc.stderr
    result = json.loads((tmp_path / "out" / "damaged.json").read_text())
    assert result["error"] in problem[0]
    assert 0.5 * duration < result["duration"] < 0.8 * duration
    # The text is that of the recording's first part: scored against as many words of the reference.
    words = result["text"].split()
    assert len(words) > 0.4 * len(reference.split())
    assert word_errors(" ".join(reference.split()[: len(words)]), result["text"]).rate < 0.25
    assert (tmp_path / "out" / "damaged.txt").read_text().split() == words


def test_subtitle_options(long_recording, tmp_path):
    path, _, _ = long_recording
    proc = run("transcribe", path, "--format", "srt", "--output-dir", tmp_path, "--decoder", "greedy",
               "--max-line-chars", "16", "--max-lines", "1", "--max-cue-seconds", "2")
    assert proc.returncode == 0, proc.stderr
    for block in (tmp_path / "long.srt").read_text().strip().split("\n\n"):
        lines = block.splitlines()
        start, end = (_seconds(m) for m in re.findall(TIME, lines[1]))
        assert len(lines) == 3 and (len(lines[2]) <= 16 or " " not in lines[2])
        assert end - start <= 2.0 + 1e-6 or " " not in lines[2]
    proc = run("transcribe", path, "--max-lines", "0")
    assert proc.returncode == 1 and "--max-lines must be at least 1" in proc.stderr


def test_a_folder_with_bad_files_finishes_and_lists_them(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    good = sorted((AN4 / "wav" / "an4_clstk" / "fash").glob("*.sph"))[:2]
    for i, f in enumerate(good):
        soundfile.write(src / ("sub" if i else ".") / f"good{i}.wav", load_audio(f), 16000)
    (src / "empty.wav").write_bytes(b"")
    (src / "text.flac").write_text("not audio at all\n")
    data = (src / "good0.wav").read_bytes()
    (src / "sub" / "truncated.wav").write_bytes(data[:20])  # cut inside the header
    proc = run("transcribe", src, "--output-dir", tmp_path / "out", "--format", "txt,json")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "3 of 5 inputs failed" in proc.stderr
    for name in ("empty.wav", "text.flac", "truncated.wav"):
        assert any(line.startswith("error: ") and name in line for line in proc.stderr.splitlines()), name
    assert (tmp_path / "out" / "good0.txt").is_file() and (tmp_path / "out" / "sub" / "good1.json").is_file()


def test_globs_skip_existing_and_standard_input(tmp_path):
    folder = AN4 / "wav" / "an4_clstk" / "fash"
    pattern = str(folder.parent / "f*sh" / "an25[13]*.sph")
    proc = run("transcribe", pattern, "--output-dir", tmp_path, "--decoder", "greedy")
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.txt"))
    assert written == ["fash/an251-fash-b.txt", "fash/an253-fash-b.txt"]  # below the pattern's fixed part
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.txt")}
    proc = run("transcribe", pattern, "--output-dir", tmp_path, "--skip-existing")
    assert proc.returncode == 0 and "skipping 2 inputs whose outputs exist" in proc.stderr
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.txt")}
    proc = run("transcribe", "nothing-here-*.wav")
    assert proc.returncode == 1 and "nothing-here-*.wav: no file matches this pattern" in proc.stderr

    example = REPO / "examples" / "an4-dev-example.wav"
    proc = run("transcribe", "-", stdin=example.read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "p i t t s b u r g h"
    proc = run("transcribe", "-", stdin=b"")
    assert proc.returncode == 1 and b"standard input is empty" in proc.stderr


def test_hotwords_from_the_command_line():
    example = REPO / "examples" / "an4-dev-example.wav"
    proc = run("transcribe", example, "--hotword", "pittsburgh:2", "--hotword", "h")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "p i t t s b u r g h"
    proc = run("transcribe", example, "--hotword", "x:many")
    assert proc.returncode == 1 and "BOOST must be a number" in proc.stderr
