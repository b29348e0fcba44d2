"""The commands as a user runs them: subprocesses, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr.audio import FeatureExtractor
from asr.catalog import models_dir
from asr.data import Utterance, write_manifest
from asr.lm import ArpaModel, read_arpa_vocab
from asr.model import Model, preset_config, save_checkpoint
from asr.text import CharTokenizer

REPO = Path(__file__).resolve().parents[1]
AN4 = REPO.parent / "shared" / "data" / "an4"


def run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "asr", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_one_line_errors(proc, *must_name):
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors, proc.stderr
    for name in must_name:
        assert any(str(name) in line for line in errors), (name, proc.stderr)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    tok = CharTokenizer()
    feats = FeatureExtractor()
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 24000)]
    feats.set_stats(waves)
    save_checkpoint(d / "tiny.pt", Model(preset_config("tiny", tok.vocab_size)), tok, feats, {"dev_wer": None})
    utts = []
    for i, w in enumerate(waves):
        soundfile.write(d / f"u{i}.wav", w, 16000)
        utts.append(Utterance(f"u{i}", str(d / f"u{i}.wav"), len(w) / 16000, "some words", "s"))
    write_manifest(d / "m.jsonl", utts)
    (d / "not-audio.wav").write_text("this is not audio\n")
    return d


def test_help_of_every_command():
    for args in [["--help"], ["prepare", "--help"], ["prepare", "an4", "--help"], ["prepare", "librispeech", "--help"],
                 ["train", "--help"], ["evaluate", "--help"], ["transcribe", "--help"]]:
        proc = run(*args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "usage:" in proc.stdout
    assert "parameters" in run("train", "--help").stdout  # the preset table


def test_transcribe_good_missing_and_non_audio_files(workdir):
    proc = run("transcribe", workdir / "u0.wav", workdir / "missing.wav", workdir / "not-audio.wav",
               "--model", workdir / "tiny.pt")
    assert proc.returncode == 1
    assert_one_line_errors(proc, workdir / "missing.wav", workdir / "not-audio.wav")
    assert proc.stdout.startswith(f"{workdir / 'u0.wav'}\t")  # the good file was still transcribed
    assert "2 of 3 inputs failed" in proc.stderr


def test_transcribe_writes_every_format(workdir, tmp_path):
    proc = run("transcribe", workdir / "u0.wav", "--model", workdir / "tiny.pt", "--format", "all",
               "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"u0.{f}" for f in ["json", "srt", "tsv", "txt", "vtt"]]
    assert set(json.loads((tmp_path / "u0.json").read_text())) >= {"text", "segments", "words"}


def test_transcribe_bad_options_and_model(workdir):
    proc = run("transcribe", workdir / "u0.wav", "--model", workdir / "missing.pt")
    assert proc.returncode == 1
    assert_one_line_errors(proc, workdir / "missing.pt")
    proc = run("transcribe", workdir / "u0.wav", "--model", workdir / "not-audio.wav")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "not-audio.wav")
    proc = run("transcribe", workdir / "u0.wav", "--model", workdir / "tiny.pt", "--format", "doc")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "doc")


def test_evaluate_writes_summary_and_utterances(workdir, tmp_path):
    proc = run("evaluate", "--manifest", workdir / "m.jsonl", "--model", workdir / "tiny.pt", "--output", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "WER" in proc.stdout and "CER" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ["wer", "cer", "substitutions", "deletions", "insertions", "ref_words", "utterances",
                "audio_seconds", "decode_seconds"]:
        assert key in summary
    assert summary["utterances"] == 2 and summary["ref_words"] == 4
    rows = [json.loads(line) for line in (tmp_path / "utterances.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["u0", "u1"] and all("hypothesis" in r for r in rows)


def test_evaluate_reports_unreadable_audio_and_goes_on(workdir, tmp_path):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text(
        json.dumps({"id": "good", "audio": str(workdir / "u0.wav"), "duration": 1.0, "text": "a"}) + "\n"
        + json.dumps({"id": "bad", "audio": str(workdir / "not-audio.wav"), "duration": 1.0, "text": "b"}) + "\n"
        + "{broken json\n")
    proc = run("evaluate", "--manifest", manifest, "--model", workdir / "tiny.pt", "--output", tmp_path / "out")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "not-audio.wav")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["utterances"] == 1 and len(summary["skipped"]) == 1


def test_evaluate_missing_manifest(workdir, tmp_path):
    proc = run("evaluate", "--manifest", tmp_path / "none.jsonl", "--model", workdir / "tiny.pt", "--output", tmp_path)
    assert proc.returncode == 1
    assert_one_line_errors(proc, "none.jsonl")


def test_train_runs_and_fails_cleanly(workdir, tmp_path):
    proc = run("train", "--train", workdir / "m.jsonl", "--dev", workdir / "m.jsonl", "--preset", "tiny",
               "--epochs", "1", "--workers", "0", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()
    proc = run("train", "--train", tmp_path / "missing.jsonl", "--preset", "tiny", "--out", tmp_path / "run2")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "missing.jsonl")
    proc = run("train", "--train", workdir / "m.jsonl", "--preset", "huge", "--out", tmp_path / "run3")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "huge")
    proc = run("train", "--train", workdir / "m.jsonl", "--tokenizer", "bpe:x", "--out", tmp_path / "run4")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "--tokenizer bpe:x")


def test_shims_are_the_same_commands(workdir):
    proc = subprocess.run([sys.executable, "transcribe.py", workdir / "u0.wav", "--model", workdir / "tiny.pt"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "train.py", "--help"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0 and "--preset" in proc.stdout


@pytest.mark.skipif(not AN4.is_dir(), reason=f"real AN4 data not found at {AN4}")
def test_prepare_an4_on_the_real_layout(tmp_path):
    proc = run("prepare", "an4", "--root", AN4, "--out", tmp_path, "--dev-fraction", "0.1")
    assert proc.returncode == 0, proc.stderr
    train = (tmp_path / "an4-train.jsonl").read_text().splitlines()
    dev = (tmp_path / "an4-dev.jsonl").read_text().splitlines()
    assert len(train) + len(dev) == 948
    speakers = lambda lines: {json.loads(x)["speaker"] for x in lines}  # noqa: E731
    assert not speakers(train) & speakers(dev)


def test_prepare_missing_root(tmp_path):
    proc = run("prepare", "an4", "--root", tmp_path / "nothing", "--out", tmp_path)
    assert proc.returncode == 1
    assert_one_line_errors(proc, "nothing")
    proc = run("prepare", "librispeech", "--root", tmp_path / "nothing", "--out", tmp_path)
    assert proc.returncode == 1
    assert_one_line_errors(proc, "nothing")


EXAMPLE = REPO / "examples" / "english-dev-example.wav"
AN4_MODEL = models_dir() / "an4" / "model.pt"
ENGLISH_MODEL = models_dir() / "english" / "model.pt"


@pytest.mark.skipif(not (ENGLISH_MODEL.is_file() and EXAMPLE.is_file()), reason="default model or example missing")
def test_default_model_transcribes_the_readme_example():
    proc = run("transcribe", EXAMPLE)
    assert proc.returncode == 0, proc.stderr
    readme = (REPO / "README.md").read_text()
    assert proc.stdout.strip() and proc.stdout.strip() in readme


def test_transcribe_folder_mirrors_the_tree_and_never_overwrites(workdir, tmp_path):
    import shutil

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(workdir / "u0.wav", src / "u0.wav")
    shutil.copy(workdir / "u1.wav", src / "sub" / "u0.wav")
    out = tmp_path / "out"
    proc = run("transcribe", src, workdir / "u0.wav", "--model", workdir / "tiny.pt", "--output-dir", out)
    assert proc.returncode == 1  # the lone u0.wav would overwrite in/u0's output: reported, skipped
    assert_one_line_errors(proc, "already used by")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.txt")) == ["sub/u0.txt", "u0.txt"]


LIBRISPEECH = REPO.parent / "shared" / "data" / "librispeech-sample"


@pytest.mark.skipif(not LIBRISPEECH.is_dir(), reason=f"LibriSpeech sample not found at {LIBRISPEECH}")
def test_prepare_librispeech_on_the_real_layout(tmp_path):
    proc = run("prepare", "librispeech", "--root", LIBRISPEECH, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in (tmp_path / "test-clean.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows][:2] == ["1089-134686-0000", "1089-134686-0001"] and len(rows) == 4
    assert rows[0]["text"].startswith("HE HOPED THERE WOULD BE STEW") and rows[0]["speaker"] == "1089"
    assert all(Path(r["audio"]).is_file() and r["duration"] > 1 for r in rows)


def test_prepare_writes_beside_the_corpus_by_default_and_reports_unwritable_out(tmp_path):
    import shutil

    if not LIBRISPEECH.is_dir():
        pytest.skip(f"LibriSpeech sample not found at {LIBRISPEECH}")
    root = tmp_path / "ls"
    shutil.copytree(LIBRISPEECH, root)
    proc = run("prepare", "librispeech", "--root", root)
    assert proc.returncode == 0, proc.stderr
    assert len((root / "test-clean.jsonl").read_text().splitlines()) == 4
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    proc = run("prepare", "librispeech", "--root", root, "--out", blocked / "sub")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "cannot create this folder")


def test_beam_decoder_from_the_command_line(workdir, tmp_path):
    proc = run("transcribe", workdir / "u0.wav", "--model", workdir / "tiny.pt", "--decoder", "beam",
               "--beam-size", "4")
    assert proc.returncode == 0, proc.stderr
    proc = run("evaluate", "--manifest", workdir / "m.jsonl", "--model", workdir / "tiny.pt", "--output", tmp_path,
               "--decoder", "beam")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["decoder"] == {"decoder": "beam"}


def test_lm_build_tune_save_and_transcribe_with_the_stored_settings(tmp_path):
    if not AN4_MODEL.is_file():
        pytest.skip("bundled AN4 model not present")
    example = REPO / "examples" / "an4-dev-example.wav"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("P I T T S B U R G H\nenter six two eight\nyes\nno\nrubout\nP I T T S B U R G H P A\n")
    proc = run("lm", "build", "--text", corpus, "--order", "3", "--out", tmp_path / "lm.arpa.gz")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "3-grams" in proc.stdout
    write_manifest(tmp_path / "dev.jsonl", [Utterance("ex", str(example), 2.4, "P I T T S B U R G H", "fsrb")])
    release = tmp_path / "release"
    release.mkdir()
    (tmp_path / "lm.arpa.gz").rename(release / "lm.arpa.gz")
    proc = run("lm", "tune", "--model", "an4", "--manifest", tmp_path / "dev.jsonl", "--lm", release / "lm.arpa.gz",
               "--lm-weights", "0,1", "--word-scores=-1,0", "--beam-size-token", "10", "--save", release / "model.pt")
    assert proc.returncode == 0, proc.stderr
    assert "best: --lm-weight" in proc.stdout and len(proc.stdout.splitlines()) == 8  # 2 info + 4 rows + 2
    assert "Loading the LM" not in proc.stderr  # KenLM's banner is silenced
    settings = torch.load(release / "model.pt", weights_only=True)["metadata"]["decoder"]
    assert settings["lm"] == "lm.arpa.gz" and settings["decoder"] == "beam" and settings["beam_size_token"] == 10

    moved = tmp_path / "moved"
    release.rename(moved)  # the LM path is stored relative to the model
    proc = run("transcribe", example, "--model", moved / "model.pt", "--format", "json", "--output-dir", tmp_path,
               "--nbest", "3")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "an4-dev-example.json").read_text())
    assert result["text"] == "p i t t s b u r g h"
    assert 1 <= len(result["alternatives"]) <= 2
    proc = run("evaluate", "--manifest", tmp_path / "dev.jsonl", "--model", moved / "model.pt", "--output",
               tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "ev" / "summary.json").read_text())["decoder"]["lm"] == "lm.arpa.gz"

    (moved / "lm.arpa.gz").unlink()
    proc = run("transcribe", example, "--model", moved / "model.pt")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "lm.arpa.gz: language model file not found")
    assert run("transcribe", example, "--model", moved / "model.pt", "--decoder", "greedy").returncode == 0
    proc = run("transcribe", example, "--model", "an4", "--beam-size-token", "0")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "--beam-size-token must be at least 1")


def test_lm_build_adds_spelled_names_and_every_text_file(tmp_path):
    (tmp_path / "a.txt").write_text("enter six\n")
    (tmp_path / "b.txt").write_text("rubout\n")
    (tmp_path / "names.txt").write_text("Sharon\nMary Jo\nO'Neil\n")
    proc = run("lm", "build", "--text", tmp_path / "a.txt", "--text", tmp_path / "b.txt", "--spell",
               tmp_path / "names.txt", "--order", "6", "--out", tmp_path / "lm.arpa")
    assert proc.returncode == 0, proc.stderr
    assert "6-grams" in proc.stdout and "5 sentences" in proc.stdout  # both --text files, three names
    lm = ArpaModel.load(tmp_path / "lm.arpa")
    assert sorted(read_arpa_vocab(tmp_path / "lm.arpa")) == sorted("enter six rubout s h a r o n m y j e i l".split())
    # whole spelled names are 6-grams of the model: "s h a r o" is followed by "n"
    assert ("s", "h", "a", "r", "o", "n") in lm.ngrams
    assert lm.log10_prob("n", ["s", "h", "a", "r", "o"]) > lm.log10_prob("e", ["s", "h", "a", "r", "o"])


def test_lm_commands_report_bad_input(tmp_path):
    proc = run("lm", "build", "--text", tmp_path / "missing.txt", "--out", tmp_path / "lm.arpa")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "missing.txt: no such file")
    (tmp_path / "empty.txt").write_text("\n...\n")
    proc = run("lm", "build", "--text", tmp_path / "empty.txt", "--out", tmp_path / "lm.arpa")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "no words")
    assert not (tmp_path / "lm.arpa").exists()
    for order in (1, 7):  # the KenLM of flashlight-text's wheels cannot load a 7-gram: say so before building it
        proc = run("lm", "build", "--text", tmp_path / "empty.txt", "--order", order, "--out", tmp_path / "lm.arpa")
        assert proc.returncode == 1
        assert_one_line_errors(proc, f"--order {order}: KenLM, which beam search uses, loads orders 2 to 6")
    proc = run("lm", "build", "--spell", tmp_path / "missing.txt", "--out", tmp_path / "lm.arpa")
    assert_one_line_errors(proc, "missing.txt: no such file")
    proc = run("lm", "tune", "--model", "an4", "--manifest", tmp_path / "m.jsonl", "--lm", tmp_path / "nothing.arpa")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "nothing.arpa: language model file not found")
    proc = run("transcribe", REPO / "examples" / "an4-dev-example.wav", "--model", "an4", "--lm",
               tmp_path / "nothing.arpa")
    assert proc.returncode == 1
    assert_one_line_errors(proc, "nothing.arpa: language model file not found")


def test_every_command_with_device_refuses_one_this_machine_lacks_in_one_line(workdir, tmp_path):
    """`--device cuda` without a GPU printed a 30-line traceback (issue 30)."""
    (tmp_path / "lm.arpa").write_text("\\data\\\n")
    commands = {
        "evaluate": ["evaluate", "--manifest", workdir / "m.jsonl", "--model", workdir / "tiny.pt",
                     "--output", tmp_path / "out"],
        "lm tune": ["lm", "tune", "--manifest", workdir / "m.jsonl", "--model", workdir / "tiny.pt",
                    "--lm", tmp_path / "lm.arpa"],
        "transcribe": ["transcribe", workdir / "u0.wav", "--model", workdir / "tiny.pt"],
        "train": ["train", "--train", workdir / "m.jsonl", "--preset", "tiny", "--out", tmp_path / "run"],
    }
    for (name, args), device in zip(commands.items(), ["gpu", "cuda:99", "cuda:99", "gpu"], strict=True):
        proc = run(*args, "--device", device)
        assert proc.returncode == 1, (name, proc.stderr)
        assert_one_line_errors(proc, f"device {device!r}" if device == "gpu" else f"device {device}")
        assert len(proc.stderr.strip().splitlines()) == 1, (name, proc.stderr)


def test_computing_commands_document_device_and_threads():
    for args in (["evaluate"], ["lm", "tune"]):
        text = " ".join(run(*args, "--help").stdout.split())
        assert "--device DEVICE cpu, cuda, cuda:1, ... (default cpu)" in text
        assert "--threads N CPU threads for the model (default: every core this process may use" in text
    assert "--workers N, --threads N" in run("doctor", "--help").stdout
    text = " ".join(run("train", "--help").stdout.split())
    assert "(default: 1, or 0 on a single core)" in text and "less the --workers, at least 1" in text
    assert "at most 10 % of the run's optimizer steps" in text
