"""`asr transcribe` and the files it writes (issue 30): where they go without --output-dir, names of
inputs that differ only in their extension, never overwriting, each failure listed once, n-best."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr.decoding import BeamOptions, beam_search
from asr.inputs import drop_output_collisions
from asr.text import CharTokenizer

REPO = Path(__file__).resolve().parents[1]
AN4_MODEL = REPO / "models" / "an4" / "model.pt"
EXAMPLE = REPO / "examples" / "an4-dev-example.wav"


def run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "asr", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "talk.wav"
    soundfile.write(path, (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    return path


def test_subtitles_without_output_dir_go_to_the_current_folder_and_never_overwrite(tiny_checkpoint, wav, tmp_path):
    proc = run("transcribe", wav, "--model", tiny_checkpoint, "--format", "srt,json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.json", "talk.srt"]
    (tmp_path / "talk.srt").write_text("mine\n")
    proc = run("transcribe", wav, "--model", tiny_checkpoint, "--format", "srt,json", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"{wav}: would overwrite talk.srt, talk.json; --overwrite" in errors[0], errors
    assert (tmp_path / "talk.srt").read_text() == "mine\n"
    proc = run("transcribe", wav, "--model", tiny_checkpoint, "--format", "srt,json", "--overwrite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "talk.srt").read_text() != "mine\n"
    proc = run("transcribe", wav, "--model", tiny_checkpoint, cwd=tmp_path)  # txt alone: standard output
    assert proc.returncode == 0 and not (tmp_path / "talk.txt").exists()


def test_inputs_that_differ_only_in_their_extension_get_outputs_of_their_own(tiny_checkpoint, wav, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    wave, _ = soundfile.read(wav, dtype="float32")
    for name in ("a.flac", "a.wav", "a.ogg", "b.wav"):
        soundfile.write(src / name, wave, 16000)
    proc = run("transcribe", src, "--model", tiny_checkpoint, "--format", "srt", "--output-dir", out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.flac.srt", "a.ogg.srt", "a.wav.srt", "b.srt"]


def test_output_names_keep_the_extension_only_where_it_tells_inputs_apart():
    files = [(Path("x/a.wav"), Path("a")), (Path("x/a.mp3"), Path("a")), (Path("y/a.wav"), Path("a")),
             (Path("x/b.wav"), Path("sub/b"))]
    unique, problems = drop_output_collisions(files)
    assert unique == [(Path("x/a.wav"), Path("a")), (Path("x/a.mp3"), Path("a.mp3")), (Path("x/b.wav"), Path("sub/b"))]
    assert problems == ["y/a.wav: skipped, its output name a is already used by x/a.wav"]


def test_a_failed_input_is_reported_once_in_the_final_list(tiny_checkpoint, wav, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio\n")
    proc = run("transcribe", wav, bad, tmp_path / "missing.wav", "--model", tiny_checkpoint)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    mentions = [line for line in lines if "bad.wav" in line]
    assert len(mentions) == 1 and mentions[0].startswith(f"error: {bad}: "), proc.stderr
    assert sum("missing.wav" in line for line in lines) == 1
    assert lines.index("2 of 3 inputs failed:") < lines.index(mentions[0])


def test_nbest_alternatives_are_distinct():
    # "a" and "a " spell the same transcript once the search's trailing silence is dropped.
    tok = CharTokenizer()
    a, b, sp = tok.encode("a")[0], tok.encode("b")[0], tok.tokens.index(" ")
    lp = torch.full((1, 4, tok.vocab_size), -12.0)
    lp[0, 0, a], lp[0, 0, b] = -0.3, -1.5
    lp[0, 1:, 0], lp[0, 1:, sp] = -0.7, -0.7
    candidates = beam_search(lp.log_softmax(-1), torch.tensor([4]), tok, BeamOptions(beam_size=20, nbest=3))[0]
    texts = [tok.decode(t) for t, _ in candidates]
    assert len(texts) == 3 and len(set(texts)) == 3 and texts[0] == "a", texts


def test_nbest_needs_json_and_beam_search(tiny_checkpoint, wav):
    proc = run("transcribe", wav, "--model", tiny_checkpoint, "--nbest", "3")
    assert proc.returncode == 1 and "--nbest 3: the next best transcripts go to the json output" in proc.stderr
    proc = run("transcribe", wav, "--model", tiny_checkpoint, "--nbest", "3", "--format", "json", "--output-dir",
               wav.parent / "out")
    assert proc.returncode == 1 and "--nbest 3 needs beam search" in proc.stderr


@pytest.mark.skipif(not (AN4_MODEL.is_file() and EXAMPLE.is_file()), reason="needs the bundled AN4 model")
def test_nbest_says_why_it_has_fewer_alternatives(tmp_path):
    import json

    proc = run("transcribe", EXAMPLE, "--model", AN4_MODEL, "--nbest", "3", "--format", "json", "--output-dir",
               tmp_path)
    assert proc.returncode == 0, proc.stderr
    alternatives = json.loads((tmp_path / "an4-dev-example.json").read_text())["alternatives"]
    assert len(alternatives) == 1  # the model's stored --beam-threshold 12 leaves one
    assert "1 of the 2 alternatives asked for" in proc.stderr and "--beam-threshold 12" in proc.stderr
    proc = run("transcribe", EXAMPLE, "--model", AN4_MODEL, "--nbest", "3", "--beam-threshold", "25", "--format",
               "json", "--output-dir", tmp_path, "--overwrite")
    assert proc.returncode == 0 and "note:" not in proc.stderr, proc.stderr
    alternatives = json.loads((tmp_path / "an4-dev-example.json").read_text())["alternatives"]
    assert len(alternatives) == 2 and len({a["text"] for a in alternatives}) == 2
