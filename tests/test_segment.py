import tracemalloc

import numpy as np
import pytest
import soundfile
import soxr

from asr import segment
from asr.audio import SAMPLE_RATE, load_audio
from asr.errors import InputError
from asr.segment import read_blocks, segments

RATE = SAMPLE_RATE


def _bursts(seed: int = 0, seconds: float = 150.0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tones and noise bursts of 0.5-6 s between silences of 0.35-1.5 s; also the bursts' sample ranges."""
    rng = np.random.default_rng(seed)
    pieces, bursts, n = [], [], 0
    while n < seconds * RATE:
        gap = np.zeros(round(rng.uniform(0.35, 1.5) * RATE), dtype=np.float32)
        length = round(rng.uniform(0.5, 6.0) * RATE)
        t = np.arange(length) / RATE
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(length)
        pieces += [gap, tone.astype(np.float32)]
        bursts.append((n + len(gap), n + len(gap) + length))
        n += len(gap) + length
    pieces.append(np.zeros(RATE // 2, dtype=np.float32))
    return np.concatenate(pieces), bursts


def _blocks(audio: np.ndarray, seconds: float):
    size = round(seconds * RATE)
    return (audio[i : i + size] for i in range(0, len(audio), size))


def _assert_tiles(chunks, audio: np.ndarray) -> None:
    """The keep ranges tile [0, duration) exactly, and each chunk's audio is the file's audio at its place."""
    assert chunks[0].keep_from == 0.0
    assert chunks[-1].keep_to == len(audio) / RATE
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.keep_to == b.keep_from
    for c in chunks:
        assert c.start <= c.keep_from < c.keep_to <= c.end
        assert c.audio.dtype == np.float32
        np.testing.assert_array_equal(c.audio, audio[round(c.start * RATE) : round(c.end * RATE)])


# --- read_blocks ------------------------------------------------------------------------------------


def _write_tone_file(path, rate: int, channels: int, seconds: float, **kwargs) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    soundfile.write(str(path), np.stack([wave * (0.5 + 0.5 * c) for c in range(channels)], axis=1), rate, **kwargs)


@pytest.mark.parametrize(("name", "rate", "channels", "seconds", "block_seconds"), [
    ("a.wav", 44_100, 2, 3.3, 0.5), ("a.flac", 8_000, 1, 3.3, 0.5), ("a.sph", 16_000, 1, 3.3, 0.5),
    ("a.ogg", 48_000, 2, 3.3, 0.5),
    ("six.wav", 48_000, 6, 16.2, 7.0),  # blocks longer than the reads (5 s) they are made of
])
def test_read_blocks_equals_load_audio(tmp_path, name, rate, channels, seconds, block_seconds):
    path = tmp_path / name
    _write_tone_file(path, rate, channels, seconds, format="NIST" if name.endswith(".sph") else None)
    blocks = list(read_blocks(path, block_seconds=block_seconds))
    whole = load_audio(path)  # soxr in one piece
    # Exact block sizes: one block at a time, never the file.
    size = round(block_seconds * RATE)
    assert [len(b) for b in blocks[:-1]] == [size] * (len(blocks) - 1)
    assert 0 < len(blocks[-1]) <= size
    streamed = np.concatenate(blocks)
    assert streamed.dtype == np.float32 and len(streamed) == len(whole)
    assert np.max(np.abs(streamed - whole)) < 1e-3  # no clicks at block edges


def test_read_blocks_resamples_like_soxr_in_one_piece(tmp_path):
    path = tmp_path / "stereo.wav"
    _write_tone_file(path, 44_100, 2, seconds=2.0, subtype="FLOAT")
    stereo, _ = soundfile.read(str(path), dtype="float32")
    expected = soxr.resample(stereo.mean(axis=1), 44_100, RATE, quality="HQ")
    streamed = np.concatenate(list(read_blocks(path, block_seconds=0.37)))
    assert np.max(np.abs(streamed - expected)) < 1e-5


def test_read_blocks_real_speech(shared_data):
    files = sorted((shared_data / "an4" / "wav" / "an4_clstk").glob("*/*.sph"))[:3]
    if not files:
        pytest.skip("no AN4 sphere files")
    for path in files:
        np.testing.assert_array_equal(np.concatenate(list(read_blocks(path, block_seconds=0.3))), load_audio(path))


def test_read_blocks_formats_libsndfile_cannot_open_go_through_load_audio(tmp_path, monkeypatch):
    path = tmp_path / "a.flac"
    _write_tone_file(path, 22_050, 1, seconds=1.2)
    monkeypatch.setattr(segment, "_open_soundfile", lambda path: None)
    blocks = list(read_blocks(path, block_seconds=0.5))
    assert [len(b) for b in blocks] == [8000, 8000, 3200]
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(path))


def _errors(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("this is not audio\n" * 20)
    soundfile.write(str(tmp_path / "header-only.wav"), np.zeros((0, 1), dtype=np.float32), RATE)
    return ["missing.wav", "folder", "empty.wav", "notes.wav", "header-only.wav"]


def test_read_blocks_errors_are_load_audios(tmp_path):
    for name in _errors(tmp_path):
        path = tmp_path / name
        with pytest.raises(InputError) as expected:
            load_audio(path)
        with pytest.raises(InputError) as got:
            list(read_blocks(path))
        assert str(got.value) == str(expected.value)
        assert str(path) in str(got.value)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_read_blocks_non_finite_samples(tmp_path, value):
    data = np.zeros(3 * RATE, dtype=np.float32)
    data[2 * RATE + 5] = value
    path = tmp_path / "bad.wav"
    soundfile.write(str(path), data, RATE, subtype="FLOAT")
    blocks = read_blocks(path, block_seconds=1.0)
    assert len(next(blocks)) == RATE  # what comes before the damage is yielded
    with pytest.raises(InputError, match=r"bad\.wav: contains NaN or infinite samples \(the first at 2\.0 s\)"):
        list(blocks)


def test_read_blocks_truncated_flac_yields_what_it_can_then_raises(tmp_path):
    path = tmp_path / "cut.flac"
    _write_tone_file(path, RATE, 1, seconds=6.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    got = []
    with pytest.raises(InputError, match=r"cut\.flac: cannot read audio after"):
        for block in read_blocks(path, block_seconds=0.5):
            got.append(block)
    assert 0 < sum(map(len, got)) < 6 * RATE


def test_read_blocks_truncated_wav_reads_to_its_real_end(tmp_path):
    path = tmp_path / "cut.wav"
    _write_tone_file(path, RATE, 1, seconds=2.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    np.testing.assert_array_equal(np.concatenate(list(read_blocks(path, block_seconds=0.3))), load_audio(path))


# --- segments ---------------------------------------------------------------------------------------


def test_cuts_fall_in_silences_and_chunks_are_long():
    audio, bursts = _bursts()
    seg = segments(_blocks(audio, 7.3), max_seconds=20.0, min_seconds=10.0, overlap_seconds=2.0)
    chunks = list(seg)
    assert seg.forced_cuts == 0 and len(chunks) > 5
    _assert_tiles(chunks, audio)
    for c in chunks[:-1]:
        cut = round(c.end * RATE)
        assert not any(b0 <= cut < b1 for b0, b1 in bursts), f"cut at {c.end:.2f} s inside a burst"
        assert c.keep_from == c.start and c.keep_to == c.end  # a pause cut: the chunk answers for all of itself
        assert 10.0 <= c.end - c.start <= 20.0
    assert not any(c.silent for c in chunks)


def test_later_long_pause_wins_over_earlier_longer_one():
    tone = 0.3 * np.sin(np.arange(RATE) * 0.2).astype(np.float32)  # 1 s
    pieces = [np.tile(tone, 11), np.zeros(3 * RATE), np.tile(tone, 4), np.zeros(round(1.2 * RATE)), np.tile(tone, 20)]
    audio = np.concatenate(pieces).astype(np.float32)
    chunks = list(segments(_blocks(audio, 5.0), max_seconds=20.0, min_seconds=8.0))
    # Pauses 11-14 s and 18-19.2 s: both "long" (>= 1 s), the later one gives the longer chunk.
    assert chunks[0].end == pytest.approx(18.6, abs=0.02)


def test_continuous_noise_is_cut_with_overlap():
    audio = (0.1 * np.random.default_rng(2).standard_normal(round(75.3 * RATE))).astype(np.float32)
    seg = segments(_blocks(audio, 4.0), max_seconds=20.0, min_seconds=10.0, overlap_seconds=2.0)
    chunks = list(seg)
    _assert_tiles(chunks, audio)
    assert seg.forced_cuts == len(chunks) - 1 == 4
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.end - a.start == pytest.approx(20.0)
        assert a.end - b.start == pytest.approx(2.0)  # the overlap both chunks see
        assert a.keep_to == pytest.approx(a.end - 1.0)  # split in its middle


def test_real_speech_is_cut_between_words(shared_data):
    files = sorted((shared_data / "an4" / "wav" / "an4_clstk").glob("*/*.sph"))[:25]
    if not files:
        pytest.skip("no AN4 sphere files")
    audio = np.concatenate([load_audio(f) for f in files])
    seg = segments(_blocks(audio, 3.0), max_seconds=12.0, min_seconds=5.0)
    chunks = list(seg)
    _assert_tiles(chunks, audio)
    assert seg.forced_cuts == 0
    loud = np.percentile(audio**2, 99)
    for c in chunks[:-1]:
        cut = round(c.end * RATE)
        around = audio[cut - 800 : cut + 800]  # 100 ms around the cut
        assert 10 * np.log10(np.mean(around**2) / loud) < -30


def test_all_zero_input_gives_silent_chunks():
    audio = np.zeros(70 * RATE, dtype=np.float32)
    chunks = list(segments(_blocks(audio, 6.0), max_seconds=30.0, min_seconds=15.0))
    _assert_tiles(chunks, audio)
    assert all(c.silent for c in chunks)
    assert all(c.end - c.start <= 30.0 for c in chunks)


def test_very_quiet_speech_is_not_silent():
    audio, _ = _bursts(seconds=40.0)
    audio *= 10 ** (-45 / 20)  # speech peaking near -55 dBFS: quiet, and still cut at its own pauses
    seg = segments(_blocks(audio, 5.0), max_seconds=20.0, min_seconds=10.0)
    chunks = list(seg)
    assert seg.forced_cuts == 0 and not any(c.silent for c in chunks)


@pytest.mark.parametrize("seconds", [0.1, 0.001, 14.0, 30.0])
def test_short_input_is_one_chunk(seconds):
    audio = (0.1 * np.random.default_rng(3).standard_normal(round(seconds * RATE))).astype(np.float32)
    chunks = list(segments([audio]))
    assert len(chunks) == 1
    assert (chunks[0].start, chunks[0].keep_from, chunks[0].keep_to) == (0.0, 0.0, len(audio) / RATE)
    _assert_tiles(chunks, audio)


def test_no_blocks_no_chunks():
    assert list(segments([])) == []
    assert list(segments([np.zeros(0, dtype=np.float32)])) == []


def test_chunk_owns_its_keep_range():
    chunks = list(segments(_blocks(np.ones(45 * RATE, dtype=np.float32) * 0.1, 10.0)))
    owners = [[c.owns(t) for c in chunks].count(True) for t in np.arange(0, 45, 0.01)]
    assert owners == [1] * len(owners)


def test_bounded_memory_over_twenty_minutes():
    block_seconds, rng = 10.0, np.random.default_rng(4)

    def lazy_audio():  # 20 minutes of bursts and pauses, made a block at a time
        for _ in range(120):
            block = np.zeros(round(block_seconds * RATE), dtype=np.float32)
            for start in range(0, len(block), 4 * RATE):  # a burst of 1-3.5 s every 4 s
                burst = block[start : start + round(rng.uniform(1.0, 3.5) * RATE)]
                burst[:] = 0.2 * rng.standard_normal(len(burst))
            yield block

    seg = segments(lazy_audio(), max_seconds=30.0, min_seconds=15.0, overlap_seconds=2.0)
    total = 0.0
    tracemalloc.start()
    try:
        for c in seg:
            assert c.end - c.start <= 30.0
            total += c.keep_to - c.keep_from
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == pytest.approx(1200.0)
    assert seg.max_buffered_seconds <= 30.0 + block_seconds + 0.025  # max_seconds + a block + a frame
    # 20 minutes are 77 MB of float32; the audio held (40 s: 2.6 MB) with its copies and frame energies is far less.
    assert peak < 16e6, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("kwargs", [dict(min_seconds=40.0), dict(min_seconds=0.0), dict(overlap_seconds=20.0),
                                    dict(overlap_seconds=-1.0), dict(sample_rate=0)])
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        segments([], **kwargs)


def test_stereo_blocks_are_refused():
    with pytest.raises(ValueError, match="mono"):
        list(segments([np.zeros((100, 2), dtype=np.float32)]))
