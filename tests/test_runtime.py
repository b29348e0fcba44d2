"""The torch-free runtime (asr.runtime): its features, alignment and decoders equal the PyTorch path's pieces,
its transcripts equal `asr transcribe`'s (words, times, confidences, long audio), int8 keeps the transcripts,
and it runs with torch made unimportable."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torchless import without_torch

from asr.audio import load_audio
from asr.runtime import bundle, load
from asr.runtime.cli import main as lite_main
from asr.runtime.decoding import align, greedy_decode
from asr.runtime.features import Features
from asr.text import CharTokenizer
from asr.transcribe import Transcriber as TorchTranscriber

REPO = Path(__file__).resolve().parents[1]
AN4_EXAMPLES = sorted((REPO / "examples").glob("an4-*.wav"))


def _words(transcript) -> list[tuple[str, float, float]]:
    return [(w.word, w.start, w.end) for w in transcript.words]


def _assert_same(runtime, pytorch):
    """The same transcript: text, segments, words with times, n-best; confidences to 1e-4 (float sums)."""
    assert runtime.text == pytorch.text
    assert _words(runtime) == _words(pytorch)
    assert [(s.start, s.end, s.text) for s in runtime.segments] == [(s.start, s.end, s.text) for s in pytorch.segments]
    assert np.allclose([w.confidence for w in runtime.words], [w.confidence for w in pytorch.words], atol=1e-4)
    assert runtime.alternatives == pytorch.alternatives
    assert (runtime.duration, runtime.error, runtime.warning) == (pytorch.duration, pytorch.error, pytorch.warning)


def test_features_equal_pytorch_features(an4_export):
    from asr.model import load_checkpoint

    _, _, expected, _ = load_checkpoint(REPO / "models" / "an4" / "model.pt")
    features = Features.from_bundle(bundle.read(an4_export))
    rng = np.random.default_rng(0)
    waves = [load_audio(p) for p in AN4_EXAMPLES] + [
        np.zeros(4000, np.float32),  # digital silence: every frame at the floor, left out of the utterance mean
        np.concatenate([np.zeros(8000), 0.1 * rng.standard_normal(8000)]).astype(np.float32),
        (1e-4 * rng.standard_normal(3000)).astype(np.float32),  # very quiet
        rng.standard_normal(100).astype(np.float32)]  # shorter than a window
    for wave in waves:
        ours, theirs = features(wave), expected(wave).numpy()
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        assert np.abs(ours - theirs).max() <= 1e-4


def test_forced_alignment_equals_torchaudio():
    """The numpy Viterbi finds torchaudio's path, ties included (uniform posteriors tie everywhere)."""
    from asr.alignment import align as torch_align

    rng = np.random.default_rng(1)
    cases = []
    for frames in (1, 2, 5, 17, 60, 400):  # 400 frames: over 127 CTC states, past what int8 indices hold
        for n in {1, max(1, frames // 3), max(1, frames // 2)}:
            tokens = rng.integers(1, 6, n).tolist()  # few symbols: repeats, which need a blank between
            logits = rng.standard_normal((frames, 6)).astype(np.float32) * 3
            log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            cases.append((log_probs.astype(np.float32), tokens))
    cases.append((np.full((12, 6), -np.log(6), dtype=np.float32), [2, 2, 3]))
    cases.append((np.full((7, 6), -np.log(6), dtype=np.float32), [1, 2, 3, 4, 5, 1, 2]))  # no room to spare
    checked = 0
    for log_probs, tokens in cases:
        if len(tokens) + sum(a == b for a, b in zip(tokens, tokens[1:], strict=False)) > len(log_probs):
            continue
        expected = torch_align(torch.from_numpy(log_probs), tokens).numpy()
        np.testing.assert_array_equal(align(log_probs, tokens), expected)
        checked += 1
    assert checked >= 12
    np.testing.assert_array_equal(align(cases[0][0], []), np.zeros(len(cases[0][0])))


def test_greedy_decoding_equals_pytorch():
    from asr.decoding import greedy_decode as torch_greedy

    rng = np.random.default_rng(2)
    tokenizer = CharTokenizer()
    logits = rng.standard_normal((3, 40, tokenizer.vocab_size)).astype(np.float32) * 4
    logits[:, :, 0] += 2  # blanks between the letters, as a CTC model has them
    log_probs = (logits - np.log(np.exp(logits).sum(-1, keepdims=True))).astype(np.float32)
    lengths = np.array([40, 23, 1])
    ours = greedy_decode(log_probs, lengths, tokenizer)
    theirs = torch_greedy(torch.from_numpy(log_probs), torch.from_numpy(lengths), tokenizer)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.text, a.tokens, a.frames) == (b.text, b.tokens, b.frames)
        assert [(w.word, w.start, w.end) for w in a.words] == [(w.word, w.start, w.end) for w in b.words]
        assert np.allclose([w.confidence for w in a.words], [w.confidence for w in b.words], atol=1e-6)


@pytest.mark.parametrize("decoder", [{"decoder": "greedy"}, {"nbest": 3}], ids=["greedy", "stored-beam-lm-nbest"])
def test_transcripts_equal_the_pytorch_path(an4_export, decoder):
    """Greedy, and the model's stored beam search with its 6-gram LM (the default), against PyTorch fp32."""
    runtime = load(an4_export, threads=1, **decoder)
    pytorch = TorchTranscriber.load("an4", precision="fp32", decoder=decoder)
    assert runtime.decoder_settings["decoder"] == pytorch.decoder_settings["decoder"]
    for path in AN4_EXAMPLES:
        _assert_same(runtime.transcribe(path), pytorch.transcribe(path))
    assert runtime.transcribe(AN4_EXAMPLES[-1]).text == "p i t t s b u r g h"


@pytest.mark.parametrize("boost", [0.01, 2.0])
def test_hotwords_are_boosted_as_on_the_pytorch_path(tmp_path, boost):
    """--hotword in the runtime: the same boosted word LM (asr.decoding._boosted_lm) over flashlight directly."""
    from dataclasses import replace

    from test_decoding import _ambiguous_cat  # pytest puts tests/ on the path

    from asr.decoding import BeamOptions
    from asr.decoding import beam_decode as torch_beam_decode
    from asr.lm import build_arpa
    from asr.runtime.decoding import beam_decode

    lm = tmp_path / "lm.arpa"
    build_arpa(["the cat sat on the mat", "the cat ate", "a cat and the dog", "the cut was deep"], 3, lm)
    tok = CharTokenizer()
    lp = _ambiguous_cat(tok)
    options = replace(BeamOptions(lm=str(lm), lm_weight=0.5), hotwords=(("cat", boost),))
    runtime = beam_decode(lp.numpy(), np.array([15]), tok, options=options)[0]
    assert runtime.text == ("the cat" if boost > 1 else "the cut")
    assert runtime.text == torch_beam_decode(lp, torch.tensor([15]), tok, options=options)[0].text


def test_long_audio_is_segmented_as_in_pytorch(an4_export, tmp_path):
    """Several segments (cut at pauses), and forced cuts with overlap where the segments may not be long."""
    pause = np.zeros(16000, np.float32)
    wave = np.concatenate([part for p in AN4_EXAMPLES for part in (load_audio(p), pause)])
    path = tmp_path / "long.wav"
    soundfile.write(path, wave, 16000)
    runtime = load(an4_export, threads=1, decoder="greedy")
    pytorch = TorchTranscriber.load("an4", precision="fp32", decoder={"decoder": "greedy"})
    for settings in ({}, {"max_segment_seconds": 4.0, "split_pause_seconds": None, "batch_size": 3}):
        ours, theirs = runtime.transcribe(path, **settings), pytorch.transcribe(path, **settings)
        _assert_same(ours, theirs)
        assert len(ours.segments) >= 4
    assert runtime.transcribe(wave, 16000).text == pytorch.transcribe(wave, 16000).text  # arrays too


def test_int8_export_gives_the_same_transcripts(tmp_path, an4_export):
    from asr.export import export

    export("an4", tmp_path / "int8", int8=True)
    assert (tmp_path / "int8" / bundle.ENCODER).stat().st_size < (an4_export / bundle.ENCODER).stat().st_size / 3
    int8, fp32 = load(tmp_path / "int8", threads=1), load(an4_export, threads=1)
    assert int8.precision == "int8"
    for path in AN4_EXAMPLES:
        assert int8.transcribe(path).text == fp32.transcribe(path).text


_WITHOUT_TORCH = without_torch("asr.runtime.cli")  # the runtime where torch and torchaudio cannot be imported


@pytest.mark.parametrize("decoder", [["--decoder", "greedy"], []], ids=["greedy", "stored-beam-lm"])
def test_the_runtime_never_imports_torch(an4_export, tmp_path, decoder):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(AN4_EXAMPLES[-1]), "--model", str(an4_export),
                           "--format", "json,srt,txt", "--output-dir", str(out), "--threads", "1", *decoder],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch imports tried: [] loaded: []" in proc.stderr
    result = json.loads((out / (AN4_EXAMPLES[-1].stem + ".json")).read_text())
    assert result["text"] == "p i t t s b u r g h"
    assert all(0 <= w["start"] < w["end"] <= result["duration"] for w in result["words"])
    assert (out / (AN4_EXAMPLES[-1].stem + ".srt")).read_text().startswith("1\n00:00:")


def test_the_bundled_english_export_transcribes_without_torch(tmp_path):
    """The light install out of the box: no --model is the bundled English model's export (int8 encoder,
    binary LM), which agrees with the PyTorch checkpoint on the example."""
    from asr.metrics import score

    example = REPO / "examples" / "english-dev-example.wav"
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(example), "--threads", "1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch imports tried: [] loaded: []" in proc.stderr
    pytorch = TorchTranscriber.load("english").transcribe(example).text
    assert score([pytorch], [proc.stdout.strip()]).wer <= 0.15, (pytorch, proc.stdout)


def test_the_runtime_distribution_leaves_torch_out(tmp_path):
    """`pip install ./runtime` installs from this wheel: the asr package and asr-lite, and no torch among its
    requirements (nor librosa, which pulls in scipy and numba)."""
    import zipfile

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO / "runtime")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    wheel = zipfile.ZipFile(next(tmp_path.glob("asr_runtime-*.whl")))
    names = set(wheel.namelist())
    assert {"asr/runtime/transcribe.py", "asr/segment.py", "asr/outputs.py", "asr/cli/options.py"} <= names
    # the bundled English model's export, so that the light install transcribes out of the box; no checkpoint
    assert {"asr/models/english/model.json", "asr/models/english/encoder.onnx", "asr/models/english/lm.bin",
            "asr/models/english/lexicon.txt", "asr/models/english/mel_filters.npy"} <= names
    assert not any(n.endswith(".pt") for n in names)
    assert "asr/server/page/index.html" in names
    info = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line.split(":", 1)[1].strip() for line in wheel.read(info).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    assert any(r.startswith("onnxruntime") for r in requires)
    assert not [r for r in requires if r.split(">")[0].split("=")[0] in ("torch", "torchaudio", "librosa")]
    entry_points = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "asr-lite = asr.runtime.cli:main" in entry_points


def test_asr_lite_reports_bad_inputs_and_goes_on(an4_export, tmp_path, capsys):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    code = lite_main([str(AN4_EXAMPLES[0]), str(bad), str(tmp_path / "gone.wav"), "--model", str(an4_export),
                      "--decoder", "greedy", "--format", "tsv", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {bad}: cannot read audio" in err and f"error: {tmp_path / 'gone.wav'}: no such file" in err
    assert (tmp_path / "out" / (AN4_EXAMPLES[0].stem + ".tsv")).read_text().startswith("start\tend\ttext\n")
    assert lite_main([str(AN4_EXAMPLES[0]), "--model", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: not an exported model folder (no model.json; " \
                                              "`asr export` writes one)"


def test_asr_lite_reads_standard_input(an4_export):
    """`asr-lite -`: any format on standard input, as `asr transcribe -`; empty input is a one-line error."""
    command = [sys.executable, "-m", "asr.runtime", "-", "--model", str(an4_export), "--threads", "1"]
    proc = subprocess.run(command, input=AN4_EXAMPLES[-1].read_bytes(), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "p i t t s b u r g h"
    proc = subprocess.run(command, input=b"", capture_output=True, timeout=300)
    assert proc.returncode == 1 and b"error: -: standard input is empty" in proc.stderr


def test_arrays_of_either_channel_layout_as_in_pytorch(an4_export):
    wave = load_audio(AN4_EXAMPLES[-1])
    stereo = np.stack([wave, wave], axis=1)  # (N, C), as soundfile reads
    runtime = load(an4_export, threads=1)
    expected = runtime.transcribe(wave, 16000).text
    assert runtime.transcribe(stereo, 16000).text == expected == runtime.transcribe(stereo.T, 16000).text
    from asr.errors import InputError

    with pytest.raises(InputError, match="cannot tell channels from samples"):
        runtime.transcribe(np.zeros((300, 400), np.float32), 16000)


def test_asr_transcribe_runs_an_exported_folder_with_the_runtime(an4_export, monkeypatch, capsys):
    from asr.cli import main

    def no_pytorch(*args, **kwargs):
        raise AssertionError("the PyTorch Transcriber was loaded for an exported folder")

    monkeypatch.setattr(TorchTranscriber, "load", no_pytorch)
    assert main(["transcribe", str(AN4_EXAMPLES[-1]), "--model", str(an4_export), "--threads", "1"]) == 0
    assert capsys.readouterr().out.strip() == "p i t t s b u r g h"


def test_a_damaged_folder_is_named_in_one_line(an4_export, tmp_path):
    import shutil

    from asr.errors import InputError

    broken = tmp_path / "broken"
    shutil.copytree(an4_export, broken)
    (broken / bundle.MEL_FILTERS).unlink()
    with pytest.raises(InputError, match=f"{broken / bundle.MEL_FILTERS}: missing from the exported model folder"):
        bundle.read(broken)
    (broken / bundle.MANIFEST).write_text("{")
    with pytest.raises(InputError, match="cannot read it as JSON"):
        bundle.read(broken)


def test_batching_is_the_pytorch_paths():
    """The runtime batches, pads and assembles its transcript with the very helpers the PyTorch Transcriber uses."""
    import asr.batching
    import asr.runtime.transcribe as ours
    import asr.transcribe as theirs

    for name in ("transcribe_blocks", "audio_blocks", "chunk_result", "padded_frames", "split_pause"):
        assert getattr(ours, name) is getattr(asr.batching, name) is getattr(theirs, name)
    assert ours.RUNTIME_SORT_SECONDS <= asr.batching.SORT_SECONDS  # the runtime holds less audio at once


def test_bench_runtime_runs(tmp_path):
    proc = subprocess.run([sys.executable, "bench/bench_runtime.py", "--repeats", "1", "--seconds", "3",
                           "--minutes", "0.1", "--workdir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "first transcript" in proc.stdout and "int8 runtime" in proc.stdout
