from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr.catalog import models_dir
from asr.inputs import drop_output_collisions, find_audio
from asr.transcribe import Transcriber


@pytest.fixture
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture
def speech_wav(tmp_path):
    rng = np.random.default_rng(1)
    wave = (0.1 * rng.standard_normal(24000)).astype(np.float32)
    path = tmp_path / "noise.wav"
    soundfile.write(path, wave, 16000)
    return path, wave


def test_checkpoint_round_trip_transcribes_identically(checkpoint, speech_wav, tmp_path):
    path, wave = speech_wav
    first = Transcriber.load(checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    copy = tmp_path / "copy.pt"
    torch.save(state, copy)
    second = Transcriber.load(copy)
    a, b = first.transcribe(path), second.transcribe(path)
    assert a == b
    feats = first.features(wave).unsqueeze(0)
    lengths = torch.tensor([feats.shape[1]])
    with torch.no_grad():
        torch.testing.assert_close(first.model(feats, lengths)[0], second.model(feats, lengths)[0], rtol=0, atol=0)


def test_transcribe_accepts_path_array_and_tensor(checkpoint, speech_wav):
    path, wave = speech_wav
    t = Transcriber.load(checkpoint)
    from_path = t.transcribe(path)
    assert t.transcribe(wave, sample_rate=16000) == from_path
    assert t.transcribe(torch.from_numpy(wave), sample_rate=16000) == from_path
    assert t.transcribe(np.stack([wave, wave], axis=1), sample_rate=16000) == from_path
    with pytest.raises(ValueError, match="sample_rate"):
        t.transcribe(wave)


def test_find_audio_expands_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/1.wav", "a/b/2.flac", "a/b/notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "1.mp3").write_bytes(b"")
    files, problems = find_audio([str(tmp_path / "a"), str(tmp_path / "missing.wav"), str(tmp_path / "1.mp3")])
    a1, b2, top1 = tmp_path / "a" / "1.wav", tmp_path / "a" / "b" / "2.flac", tmp_path / "1.mp3"
    assert files == [(a1, Path("1")), (b2, Path("b/2")), (top1, Path("1"))]
    assert problems == [f"{tmp_path / 'missing.wav'}: no such file"]
    unique, collisions = drop_output_collisions(files)  # "1" twice: each keeps its extension (issue 30)
    assert unique == [(a1, Path("1.wav")), (b2, Path("b/2")), (top1, Path("1.mp3"))]
    assert collisions == []


AN4_MODEL = models_dir() / "an4" / "model.pt"


@pytest.mark.skipif(not AN4_MODEL.is_file(), reason="bundled AN4 model not present")
def test_bundled_model_loads_by_name_and_describes_itself():
    t = Transcriber.load("an4")
    assert t.metadata["dev_wer"] is not None
    assert t.tokenizer.kind in ("char", "bpe")


AN4_DEV_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "an4-dev-example.wav"


@pytest.mark.skipif(not (AN4_MODEL.is_file() and AN4_DEV_EXAMPLE.is_file()), reason="bundled AN4 model not present")
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_keeps_the_transcript_and_the_log_probs_close(precision):
    full = Transcriber.load("an4", precision="fp32")
    reduced = Transcriber.load("an4", precision=precision)
    assert (full.precision, reduced.precision) == ("fp32", precision)
    assert reduced.transcribe(AN4_DEV_EXAMPLE).text == full.transcribe(AN4_DEV_EXAMPLE).text
    from asr.audio import load_audio

    feats = full.features(load_audio(AN4_DEV_EXAMPLE)).unsqueeze(0)
    lengths = torch.tensor([feats.shape[1]])
    with torch.inference_mode():
        a, _ = full.model(feats, lengths)
        b, _ = reduced.model(feats, lengths)
    assert b.dtype == torch.float32
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.97  # the best path barely moves
    assert (a.exp() - b.exp()).abs().max() < 0.15  # and no posterior moves far


def test_precision_choices_and_errors(checkpoint):
    from asr.errors import InputError
    from asr.model import for_inference, native_bf16

    t = Transcriber.load(checkpoint)
    assert t.precision == ("bf16" if native_bf16() else "fp32")  # auto on the CPU
    model = Transcriber.load(checkpoint, precision="fp32").model
    assert for_inference(model, "fp32") == (model, "fp32")
    with pytest.raises(InputError, match="--precision must be one of"):
        for_inference(model, "fp8")
    with pytest.raises(InputError, match="CPU only"):
        for_inference(model.to("meta"), "int8")
    assert for_inference(model, "auto")[1] == "fp32"  # on a non-CPU device auto keeps fp32


def test_segments_batched_by_length_come_back_in_time_order(shared_data):
    """Segments go through the model sorted by length (asr.batching.decode_by_length); the transcript
    must still follow the audio, and equal decoding each segment alone."""
    from asr.audio import load_audio

    files = sorted((shared_data / "an4" / "wav" / "an4_clstk").glob("*/*.sph"))[:9]
    if len(files) < 9:
        pytest.skip("no AN4 sphere files")
    pause = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([x for f in files for x in (load_audio(f), pause)])
    t = Transcriber.load("an4", precision="fp32")
    alone = t.transcribe(audio, sample_rate=16000, batch_size=1)
    batched = t.transcribe(audio, sample_rate=16000, batch_size=3)
    assert len(batched.segments) >= 6  # cut at the pauses into segments of different lengths
    assert [s.start for s in batched.segments] == sorted(s.start for s in batched.segments)
    assert batched.text == alone.text
    assert [(w.word, w.start) for w in batched.words] == [(w.word, w.start) for w in alone.words]


def test_transcribe_accepts_channels_first_arrays_and_tensors(checkpoint, speech_wav):
    """torchaudio's (C, N) gave '' and 0.0 s: the mean over the wrong axis left C samples (issue 30)."""
    path, wave = speech_wav
    t = Transcriber.load(checkpoint)
    from_path = t.transcribe(path)
    for channels_first in (wave[None, :], np.stack([wave, wave])):
        assert t.transcribe(channels_first, sample_rate=16000) == from_path
        assert t.transcribe(torch.from_numpy(channels_first), sample_rate=16000) == from_path
    assert t.transcribe(wave[:, None], sample_rate=16000) == from_path
    assert t.transcribe(wave[None, :], sample_rate=16000).duration == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 16000), (4, 6), (300, 400), (2, 2, 100)])
def test_transcribe_refuses_empty_or_ambiguous_arrays(checkpoint, shape):
    from asr.errors import InputError

    t = Transcriber.load(checkpoint)
    with pytest.raises(InputError, match=r"audio array of shape \(") as e:
        t.transcribe(np.zeros(shape, dtype=np.float32), sample_rate=16000)
    assert "\n" not in str(e.value)


def test_the_split_pause_is_the_models_unless_given():
    from asr.batching import SPLIT_PAUSE_SECONDS, split_pause

    assert split_pause({}) == SPLIT_PAUSE_SECONDS == 0.5
    assert split_pause({"transcribe": {"split_pause_seconds": 1.0}}) == 1.0
    assert split_pause({"transcribe": {"split_pause_seconds": 0}}) is None  # 0: cut only near the longest
    assert split_pause({"transcribe": {"split_pause_seconds": 1.0}}, 0.7) == 0.7
    assert split_pause({"transcribe": {"split_pause_seconds": 1.0}}, None) is None
