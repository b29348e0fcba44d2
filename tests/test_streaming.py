"""asr.streaming: live transcription with bounded look-ahead, against offline transcription of the same audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asr.audio import SAMPLE_RATE, load_audio
from asr.streaming import Stream, StreamConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PIECE = 1600  # 0.1 s, as a live client sends


@pytest.fixture(scope="module")
def an4():
    from asr.transcribe import Transcriber

    return Transcriber.load("an4")


def run(stream: Stream, audio: np.ndarray, piece: int = PIECE) -> list[dict]:
    events = []
    for start in range(0, len(audio), piece):
        events += stream.accept(audio[start: start + piece])
    return events + stream.finish()


def finals(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "final"]


def test_two_utterances_give_two_finals_equal_to_offline(an4):
    """Utterances apart by a pause come as one final each, with the offline path's words, and partials before."""
    files = [EXAMPLES / "an4-dev-example.wav", EXAMPLES / "an4-cen7-mdxn-b.wav"]
    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio = np.concatenate([load_audio(files[0]), pause, load_audio(files[1]), pause])
    events = run(Stream(an4, StreamConfig()), audio)
    done = finals(events)
    assert [f["text"] for f in done] == [an4.transcribe(f).text for f in files]
    first_final = events.index(done[0])
    assert any(e["type"] == "partial" and e["text"] for e in events[:first_final])
    second_start = (len(files[0].read_bytes()) and len(load_audio(files[0]))) / SAMPLE_RATE
    assert done[0]["end"] <= second_start + 1.0 <= done[1]["start"] + 1.0
    for final in done:
        times = [(w["start"], w["end"]) for w in final["words"]]
        assert all(final["start"] <= a <= b <= final["end"] for a, b in times)
        assert times == sorted(times)
        assert all(0.0 <= w["confidence"] <= 1.0 for w in final["words"])
        assert " ".join(w["word"] for w in final["words"]) == final["text"]


@pytest.mark.parametrize("lookahead", [0.64, 1.28])
def test_committed_frames_give_the_offline_text_on_a_clean_utterance(an4, lookahead):
    """Without the second pass, the final is built from frames fixed `lookahead` after their audio."""
    audio = load_audio(EXAMPLES / "an4-dev-example.wav")
    config = StreamConfig(lookahead_seconds=lookahead, second_pass=False)
    text = " ".join(f["text"] for f in finals(run(Stream(an4, config), audio)))
    assert text == an4.transcribe(audio, SAMPLE_RATE).text


def test_silence_and_noise_give_no_words():
    """The English model is calibrated: what it judges not to be speech gives no words, as offline."""
    from asr.transcribe import Transcriber

    english = Transcriber.load("english")
    rng = np.random.default_rng(0)
    noise = 0.01 * rng.standard_normal(5 * SAMPLE_RATE).astype(np.float32)
    for audio in (np.zeros(5 * SAMPLE_RATE, np.float32), noise):
        assert english.transcribe(audio, SAMPLE_RATE).text == ""
        events = run(Stream(english, StreamConfig()), audio)
        assert all(not f["words"] and not f["text"] for f in finals(events))


def test_speech_without_pauses_is_cut_at_the_longest_utterance(an4):
    """No pause in 12 s of speech: utterances are cut at max_utterance_seconds, and the buffer stays bounded."""
    speech = load_audio(EXAMPLES / "an4-dev-example.wav")
    voiced = speech[np.abs(speech) > 0.01 * np.abs(speech).max()]  # the speech with its pauses taken out
    audio = np.tile(voiced, -(-12 * SAMPLE_RATE // len(voiced)))[: 12 * SAMPLE_RATE]
    stream = Stream(an4, StreamConfig(max_utterance_seconds=4.0))
    events = []
    longest = 0
    for start in range(0, len(audio), PIECE):
        events += stream.accept(audio[start: start + PIECE])
        longest = max(longest, len(stream._audio))
    events += stream.finish()
    done = finals(events)
    assert len(done) >= 3
    assert all(f["end"] - f["start"] <= 4.0 + 1e-6 for f in done)
    assert longest <= 4.0 * SAMPLE_RATE + PIECE + 400


def test_the_runtime_streams_as_pytorch_does(an4, an4_export):
    from asr.runtime import load

    audio = load_audio(EXAMPLES / "an4-cen8-fsrb-b.wav")
    pytorch = finals(run(Stream(an4, StreamConfig()), audio))
    runtime = finals(run(Stream(load(an4_export), StreamConfig()), audio))
    assert [f["text"] for f in runtime] == [f["text"] for f in pytorch]
    assert [[w["word"] for w in f["words"]] for f in runtime] == [[w["word"] for w in f["words"]] for f in pytorch]


def test_bad_input_and_settings_are_refused(an4):
    stream = Stream(an4, StreamConfig())
    with pytest.raises(ValueError, match="finite"):
        stream.accept(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        stream.accept(np.zeros((2, 100), dtype=np.float32))
    stream.finish()
    with pytest.raises(ValueError, match="finished"):
        stream.accept(np.zeros(100, dtype=np.float32))
    assert stream.finish() == []
    with pytest.raises(ValueError, match="pause_seconds"):
        StreamConfig(pause_seconds=0.1)
    with pytest.raises(ValueError, match="chunk_seconds"):
        StreamConfig(chunk_seconds=0)
