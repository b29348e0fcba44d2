"""Word times follow the speech (issue 30): `asr.segment.speech_frames` finds the sound,
`asr.alignment.fit_to_speech` moves the CTC path's word times onto it."""

from pathlib import Path

import numpy as np
import pytest

from asr.alignment import Word, fit_to_speech
from asr.segment import speech_frames

REPO = Path(__file__).resolve().parents[1]
AN4_MODEL = REPO / "models" / "an4" / "model.pt"
EXAMPLE = REPO / "examples" / "an4-dev-example.wav"  # "p i t t s b u r g h": speech from 0.3 s to 4.8 s of 5.1 s
F = 0.04  # seconds per output frame


def _mask(n: int, *runs: tuple[int, int]) -> np.ndarray:
    speech = np.zeros(n, dtype=bool)
    for a, b in runs:
        speech[a:b] = True
    return speech


def _frames(words: list[Word]) -> list[tuple[str, int, int]]:
    return [(w.word, round(w.start / F), round(w.end / F)) for w in words]


def test_a_first_spike_on_frame_0_moves_to_where_the_word_is_said():
    # The path: "p" on frame 0 (in the silence before the speech), the space on 16, "i" on 19.
    speech = _mask(40, (8, 18), (19, 29))
    words = [Word("p", 0.0, 1 * F, 1.0), Word("i", 19 * F, 20 * F, 1.0)]
    fitted = fit_to_speech(words, [0, 16, 19], speech, F)
    assert _frames(fitted) == [("p", 8, 16), ("i", 19, 29)]  # "p" up to the space; "i" to the end of its sound
    assert [w.confidence for w in fitted] == [1.0, 1.0]


def test_a_last_spike_on_the_final_frame_takes_the_sound_before_it():
    speech = _mask(40, (5, 16), (20, 31))
    words = [Word("g", 5 * F, 6 * F, 1.0), Word("h", 39 * F, 40 * F, 1.0)]
    assert _frames(fit_to_speech(words, [5, 18, 39], speech, F)) == [("g", 5, 16), ("h", 20, 31)]


def test_words_meet_at_the_space_in_continuous_speech():
    speech = _mask(30, (2, 28))
    words = [Word("ab", 3 * F, 6 * F, 1.0), Word("cd", 12 * F, 14 * F, 1.0)]  # a 3, b 5, space 9, c 12, d 13
    assert _frames(fit_to_speech(words, [3, 5, 9, 12, 13], speech, F)) == [("ab", 2, 9), ("cd", 9, 28)]


def test_words_far_from_any_sound_keep_their_times():
    words = [Word("x", 4 * F, 5 * F, 0.5)]
    assert fit_to_speech(words, [4], _mask(10), F) == words
    assert fit_to_speech([], [], _mask(10), F) == []


def test_speech_frames_ignores_clicks_and_bridges_short_gaps():
    rng = np.random.default_rng(0)
    audio = (1e-4 * rng.standard_normal(32000)).astype(np.float32)  # 2 s of quiet background
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000).astype(np.float32)
    audio[8000:16000] += tone  # sound from 0.5 s to 1.0 s ...
    audio[11200:12000] = 0.0  # ... with a 50 ms dip inside, too short for a pause
    audio[24000:24160] += 0.5  # a 10 ms click at 1.5 s
    speech = speech_frames(audio, F)
    assert len(speech) == 50
    assert speech[13:25].all() and not speech[:12].any() and not speech[27:].any()


@pytest.mark.skipif(not (AN4_MODEL.is_file() and EXAMPLE.is_file()), reason="needs the bundled AN4 model")
def test_word_times_follow_the_speech_of_a_real_recording():
    """The first word started at 0.00 s whatever the silence before it, and the last ended after the
    speech: the model's first and last spikes sit on the segment's first and last frames."""
    from asr.audio import load_audio
    from asr.transcribe import Transcriber

    t = Transcriber.load(AN4_MODEL, decoder={"decoder": "greedy"})
    wave = load_audio(EXAMPLE)
    plain = t.transcribe(wave, sample_rate=16000)
    assert plain.text == "p i t t s b u r g h"
    assert 0.2 <= plain.words[0].start <= 0.4  # pocketsphinx: 0.27 s; the energy rises at 0.32 s
    assert 4.6 <= plain.words[-1].end <= 4.9  # pocketsphinx: 4.80 s; the recording lasts 5.1 s
    pad = 1.3  # of noise as loud as the recording's own background, the 0.25 s before the speech
    level = np.sqrt(np.mean(np.square(wave[:4000])))
    quiet = (level * np.random.default_rng(0).standard_normal(int(pad * 16000))).astype(np.float32)
    padded = t.transcribe(np.concatenate([quiet, wave]), sample_rate=16000)
    # White noise may make the model hear an "s" in it; the words of the recording are the last ten.
    assert padded.text.endswith(plain.text)
    for a, b in zip(plain.words, padded.words[-len(plain.words):], strict=True):  # all shift by the padding
        assert abs(b.start - a.start - pad) <= 0.05 and abs(b.end - a.end - pad) <= 0.05, (a, b)
