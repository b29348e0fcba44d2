import numpy as np
import pytest
import soundfile
import torch

from asr.audio import SAMPLE_RATE, FeatureConfig, FeatureExtractor, SpecAugment, audio_duration, load_audio
from asr.errors import InputError

# name: (file extension, soundfile format, soundfile subtype)
FORMATS = {
    "wav-pcm16": ("wav", "WAV", "PCM_16"),
    "wav-pcm24": ("wav", "WAV", "PCM_24"),
    "wav-float32": ("wav", "WAV", "FLOAT"),
    "flac": ("flac", "FLAC", "PCM_16"),
    "ogg-vorbis": ("ogg", "OGG", "VORBIS"),
    "nist-sphere": ("sph", "NIST", "PCM_16"),
    "mp3": ("mp3", "MP3", None),
}
RATES = [8_000, 16_000, 22_050, 44_100, 48_000]
CHANNELS = [1, 2, 6]
TONE_HZ = 1000.0
SECONDS = 0.5


def _tone(rate: int, channels: int, seconds: float = SECONDS, hz: float = TONE_HZ) -> np.ndarray:
    """(N, C): the same sine in every channel (in phase), at a different level per channel."""
    t = np.arange(round(seconds * rate)) / rate
    levels = 0.2 + 0.1 * np.arange(channels)
    return (np.sin(2 * np.pi * hz * t)[:, None] * levels[None, :]).astype(np.float32)


def _write(path, data: np.ndarray, rate: int, fmt: str, subtype: str | None) -> None:
    try:
        soundfile.write(str(path), data, rate, format=fmt, subtype=subtype)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        if fmt == "MP3":  # MPEG Layer III is mono/stereo only; old libsndfile has no MP3 at all
            reason = str(e).rsplit(": ", 1)[-1]  # without the temporary path
            pytest.skip(f"this libsndfile ({soundfile.__libsndfile_version__}) cannot write "
                        f"{data.shape[1]}-channel MP3 at {rate} Hz: {reason}")
        raise


def _peak_hz(audio: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum)) * rate / len(audio)


# MPEG Layer III carries one or two channels only, so 6-channel MP3 is not a case.
CASES = [(f, r, c) for f in FORMATS for r in RATES for c in CHANNELS if not (FORMATS[f][1] == "MP3" and c > 2)]


@pytest.mark.parametrize(("fmt", "rate", "channels"), CASES)
def test_load_audio_any_format_rate_and_channels(tmp_path, fmt, rate, channels):
    ext, sf_format, subtype = FORMATS[fmt]
    path = tmp_path / f"tone.{ext}"
    data = _tone(rate, channels)
    _write(path, data, rate, sf_format, subtype)

    audio = load_audio(path)

    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert audio.flags["C_CONTIGUOUS"]
    expected_len = round(len(data) * SAMPLE_RATE / rate)
    assert abs(len(audio) - expected_len) <= 4, (len(audio), expected_len)
    assert np.all(np.isfinite(audio))
    assert abs(_peak_hz(audio) - TONE_HZ) <= 4.0


def test_load_audio_mixes_all_channels_to_mono(tmp_path):
    rate = 16_000
    t = np.arange(rate) / rate
    data = np.zeros((rate, 6), dtype=np.float32)
    data[:, 0] = 0.5 * np.sin(2 * np.pi * 500 * t)  # first channel
    data[:, 5] = 0.5 * np.sin(2 * np.pi * 3000 * t)  # last channel
    path = tmp_path / "six.wav"
    soundfile.write(str(path), data, rate, subtype="FLOAT")

    audio = load_audio(path)

    np.testing.assert_allclose(audio, data.mean(axis=1), atol=1e-6)
    spectrum = np.abs(np.fft.rfft(audio))
    assert spectrum[500] > 100 and spectrum[3000] > 100  # 1 Hz bins: both channels are in the mix


def test_load_audio_keeps_16k_samples_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    data = (0.1 * rng.standard_normal(4000)).astype(np.float32)
    path = tmp_path / "x.wav"
    soundfile.write(str(path), data, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), data)


def test_load_audio_to_another_rate(tmp_path):
    path = tmp_path / "x.wav"
    soundfile.write(str(path), _tone(44_100, 1), 44_100)
    audio = load_audio(path, sample_rate=8_000)
    assert abs(len(audio) - 4_000) <= 4
    assert abs(_peak_hz(audio, 8_000) - TONE_HZ) <= 4.0


def _missing(tmp_path):
    return tmp_path / "nope.wav"


def _directory(tmp_path):
    path = tmp_path / "folder.wav"
    path.mkdir()
    return path


def _zero_bytes(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def _text_as_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    return path


def _no_samples(tmp_path):
    path = tmp_path / "header-only.wav"
    soundfile.write(str(path), np.zeros((0, 1), dtype=np.float32), SAMPLE_RATE)
    return path


def _non_finite(value):
    def make(tmp_path):
        data = np.zeros(1600, dtype=np.float32)
        data[800] = value
        path = tmp_path / f"bad-{value}.wav"
        soundfile.write(str(path), data, SAMPLE_RATE, subtype="FLOAT")
        return path

    return make


@pytest.mark.parametrize(
    "make",
    [_missing, _directory, _zero_bytes, _text_as_wav, _no_samples, _non_finite(np.nan), _non_finite(np.inf)],
    ids=["missing", "directory", "zero-bytes", "text-named-wav", "no-samples", "nan", "inf"],
)
def test_load_audio_errors_name_the_file(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)  # one line for the command line


def test_audio_duration_from_header(tmp_path):
    path = tmp_path / "x.wav"
    soundfile.write(str(path), np.zeros(12_345, dtype=np.float32), 22_050)
    assert audio_duration(path) == pytest.approx(12_345 / 22_050)


@pytest.mark.parametrize("fmt", ["flac", "nist-sphere"])
def test_audio_duration_other_formats(tmp_path, fmt):
    ext, sf_format, subtype = FORMATS[fmt]
    path = tmp_path / f"x.{ext}"
    soundfile.write(str(path), np.zeros((8_000, 2), dtype=np.float32), 8_000, format=sf_format, subtype=subtype)
    assert audio_duration(path) == pytest.approx(1.0)


def test_audio_duration_of_unreadable_file_is_input_error(tmp_path):
    path = _text_as_wav(tmp_path)
    with pytest.raises(InputError, match="notes.wav"):
        audio_duration(path)


# Features ---------------------------------------------------------------------------------------


def _waves(seed: int = 0) -> list[np.ndarray]:
    """Noisy tones of different lengths and levels, so every mel bin varies."""
    rng = np.random.default_rng(seed)
    waves = []
    for i, n in enumerate([8_000, 12_345, 4_000, 16_000]):
        t = np.arange(n) / SAMPLE_RATE
        tone = np.sin(2 * np.pi * (200 + 700 * i) * t)
        waves.append((0.1 * (i + 1) * (tone + rng.standard_normal(n))).astype(np.float32))
    return waves


@pytest.mark.parametrize("n", [1, 159, 160, 161, 400, 8_123, 16_000, 16_001])
def test_log_mel_shape(n):
    feats = FeatureExtractor().log_mel(np.random.default_rng(n).standard_normal(n).astype(np.float32))
    assert feats.shape == (1 + n // 160, 80)
    assert feats.dtype == torch.float32
    assert torch.isfinite(feats).all()


def test_log_mel_equals_librosa():
    """The filter bank is torchaudio's Slaney one (faster to import); the features must be librosa's."""
    import librosa

    wave = _waves()[1]
    ours = FeatureExtractor().log_mel(wave).numpy()
    power = np.abs(librosa.stft(wave, n_fft=512, hop_length=160, win_length=400, window="hann",
                                center=True, pad_mode="constant")) ** 2
    theirs = np.log(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=512, n_mels=80) @ power + 1e-10).T
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-3


def test_ten_millisecond_clip():
    fx = FeatureExtractor()
    fx.set_stats(_waves())
    feats = fx(np.random.default_rng(1).standard_normal(160).astype(np.float32))
    assert feats.shape == (2, 80)
    assert torch.isfinite(feats).all()


def test_unnormalised_until_stats_are_set():
    fx = FeatureExtractor()
    wave = _waves()[0]
    assert fx.mean is None and fx.std is None
    assert torch.equal(fx(wave), fx.log_mel(wave))


def test_set_stats_normalises_each_bin():
    fx = FeatureExtractor()
    waves = _waves()
    fx.set_stats(waves)
    assert fx.mean.shape == fx.std.shape == (80,)
    feats = torch.cat([fx(w) for w in waves]).double()  # (sum T, F)
    assert feats.mean(0).abs().max() < 1e-3
    assert (feats.std(0, unbiased=False) - 1).abs().max() < 1e-3


def test_set_stats_takes_a_generator_and_rejects_no_audio():
    fx = FeatureExtractor()
    fx.set_stats(w for w in _waves())
    assert fx.mean is not None
    with pytest.raises(ValueError):
        FeatureExtractor().set_stats([])


def test_feature_extractor_round_trip():
    fx = FeatureExtractor()
    fx.set_stats(_waves())
    wave = _waves(seed=5)[1]
    again = FeatureExtractor.from_dict(fx.to_dict())
    assert again.config == fx.config
    assert torch.equal(again(wave), fx(wave))


def test_feature_extractor_round_trip_through_a_checkpoint(tmp_path):
    fx = FeatureExtractor(FeatureConfig(n_mels=40))
    fx.set_stats(_waves())
    torch.save({"features": fx.to_dict()}, tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    again = FeatureExtractor.from_dict(loaded["features"])
    wave = _waves(seed=7)[2]
    assert again(wave).shape[1] == 40
    assert torch.equal(again(wave), fx(wave))


def test_feature_extractor_round_trip_without_stats():
    fx = FeatureExtractor()
    again = FeatureExtractor.from_dict(fx.to_dict())
    wave = _waves()[0]
    assert again.mean is None
    assert torch.equal(again(wave), fx(wave))


def test_utterance_normalisation_takes_out_level_and_a_fixed_channel():
    waves = _waves()
    fx = {norm: FeatureExtractor(FeatureConfig(normalize=norm)) for norm in ("global", "utterance")}
    for f in fx.values():
        f.set_stats(waves)
    wave = _waves(seed=3)[3]
    quieter = 0.05 * wave
    coloured = np.convolve(wave, [1.0, -0.9])[: len(wave)].astype(np.float32)  # a fixed high-pass channel
    for changed in (quieter, coloured):
        moved = {norm: (f(changed) - f(wave)).abs().mean().item() for norm, f in fx.items()}
        assert moved["utterance"] < 0.1 * moved["global"], moved
    torch.testing.assert_close(fx["utterance"](quieter), fx["utterance"](wave), atol=1e-3, rtol=0)


def test_utterance_normalisation_leaves_digital_silence_out_of_the_mean():
    fx = FeatureExtractor(FeatureConfig(normalize="utterance"))
    fx.set_stats(_waves())
    wave = _waves(seed=3)[3]
    pause = np.zeros(8_000, dtype=np.float32)  # what the pauses of 8-bit audio quantise to
    padded_wave = np.concatenate([pause, wave, pause])
    start = len(pause) // 160
    speech = slice(start + 3, start + 90)  # frames clear of the pauses' edges
    moved = (fx(padded_wave)[speech] - fx(wave)[3:90]).abs().mean()
    logs = fx.log_mel(padded_wave)
    counted = (logs - logs.mean(0) - fx.mean) / fx.std  # the pauses in the mean
    assert moved < 0.3 and (counted[speech] - fx(wave)[3:90]).abs().mean() > 10 * moved
    assert torch.isfinite(fx(np.zeros(16_000, dtype=np.float32))).all()  # all silence: no mean to leave out


def test_utterance_normalisation_statistics_and_round_trip():
    fx = FeatureExtractor(FeatureConfig(normalize="utterance"))
    waves = _waves()
    fx.set_stats(waves)
    feats = torch.cat([fx(w) for w in waves]).double()  # the statistics are those of the centred features
    assert feats.mean(0).abs().max() < 1e-3
    assert (feats.std(0, unbiased=False) - 1).abs().max() < 1e-3
    again = FeatureExtractor.from_dict(fx.to_dict())
    assert again.config.normalize == "utterance" and torch.equal(again(waves[0]), fx(waves[0]))
    old = fx.to_dict()
    del old["config"]["normalize"]  # a checkpoint from before the option normalises globally
    assert FeatureExtractor.from_dict(old).config.normalize == "global"
    with pytest.raises(ValueError, match="'global' or 'utterance'"):
        FeatureConfig(normalize="speaker")


# SpecAugment ------------------------------------------------------------------------------------


def _feats() -> torch.Tensor:
    return torch.rand(300, 80, generator=torch.Generator().manual_seed(0)) + 1.0  # no zeros of its own


def test_spec_augment_is_reproducible_with_a_generator():
    aug, feats = SpecAugment(), _feats()
    a = aug(feats, torch.Generator().manual_seed(42))
    b = aug(feats, torch.Generator().manual_seed(42))
    assert torch.equal(a, b)


def test_spec_augment_different_seeds_give_different_masks():
    aug, feats = SpecAugment(), _feats()
    masks = {tuple((aug(feats, torch.Generator().manual_seed(s)) == 0).flatten().nonzero().flatten().tolist())
             for s in range(8)}
    assert len(masks) >= 7


@pytest.mark.parametrize("aug", [SpecAugment(), SpecAugment(freq_masks=0, time_masks=10)],
                         ids=["default", "time-only"])  # the second as `asr train --freq-masks 0 --time-masks 10`
def test_spec_augment_masks_with_zero_and_keeps_the_rest(aug):
    feats = _feats()
    before = feats.clone()
    total_masked = 0
    for seed in range(10):
        out = aug(feats, torch.Generator().manual_seed(seed))
        masked = out == 0
        assert torch.equal(out[~masked], feats[~masked])
        # Every masked value lies in a fully masked frame (time mask) or a fully masked bin (frequency mask).
        full_frames, full_bins = masked.all(1), masked.all(0)
        assert torch.equal(masked, full_frames[:, None] | full_bins[None, :])
        assert int(full_bins.sum()) <= aug.freq_masks * aug.freq_width
        assert int(full_frames.sum()) <= aug.time_masks * max(1, int(aug.time_width_ratio * feats.shape[0]))
        total_masked += int(masked.sum())
    assert total_masked > 0
    assert torch.equal(feats, before)  # the input is not modified


def test_spec_augment_on_tiny_inputs():
    aug = SpecAugment()
    for frames in [1, 2, 5]:
        out = aug(torch.ones(frames, 80), torch.Generator().manual_seed(frames))
        assert out.shape == (frames, 80)


# Waveform augmentation --------------------------------------------------------------------------


def test_speed_perturb_changes_length_and_pitch_as_sox_speed():
    from asr.audio import SpeedPerturb

    wave = _tone(SAMPLE_RATE, 1, seconds=1.0)[:, 0]
    for factor in (0.9, 1.1):
        out = SpeedPerturb(factors=(factor,))(wave, torch.Generator().manual_seed(0))
        assert abs(len(out) - len(wave) / factor) <= 2
        assert abs(_peak_hz(out) - TONE_HZ * factor) <= 4.0
    same = SpeedPerturb(factors=(1.0,))(wave, torch.Generator())
    assert same is wave
    picks = {len(SpeedPerturb()(wave, torch.Generator().manual_seed(s))) for s in range(30)}
    assert len(picks) == 3  # 0.9, 1.0 and 1.1 are all drawn


def test_noise_mixer_hits_the_snr_and_is_seeded(tmp_path):
    from asr.audio import NoiseMixer

    rng = np.random.default_rng(0)
    soundfile.write(tmp_path / "hum.wav", (0.3 * rng.standard_normal((8000, 2))).astype(np.float32), 8000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF junk")
    mixer = NoiseMixer.from_folder(tmp_path, snr_db=(10.0, 10.0))
    assert len(mixer.files) == 1  # the broken file is left out
    wave = _tone(SAMPLE_RATE, 1, seconds=3.0)[:, 0]  # longer than the noise: the noise loops
    out = mixer(wave, torch.Generator().manual_seed(1))
    noise = out - wave
    snr = 10 * np.log10(np.mean(wave**2) / np.mean(noise**2))
    assert out.shape == wave.shape and out.dtype == np.float32
    assert snr == pytest.approx(10.0, abs=0.1)
    again = mixer(wave, torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(out, again)


def test_noise_mixer_prob_leaves_the_asked_share_clean(tmp_path):
    from asr.audio import NoiseMixer

    soundfile.write(tmp_path / "hiss.wav", (0.3 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32),
                    16000)
    wave = _tone(SAMPLE_RATE, 1, seconds=0.5)[:, 0]
    half = NoiseMixer.from_folder(tmp_path, snr_db=(10.0, 10.0), prob=0.3)
    clean = [half(wave, torch.Generator().manual_seed(s)) is wave for s in range(400)]
    assert 0.6 < np.mean(clean) < 0.8  # 70 % expected
    noisy = next(s for s in range(400) if not clean[s])
    np.testing.assert_array_equal(half(wave, torch.Generator().manual_seed(noisy)),
                                  half(wave, torch.Generator().manual_seed(noisy)))
    always = NoiseMixer.from_folder(tmp_path, snr_db=(10.0, 10.0))
    assert not any(always(wave, torch.Generator().manual_seed(s)) is wave for s in range(20))
    for bad in (0.0, 1.5, -1.0):
        with pytest.raises(ValueError, match=r"in \(0, 1\]"):
            NoiseMixer.from_folder(tmp_path, prob=bad)


@pytest.mark.parametrize("augmenter, what", [("NoiseMixer", "noise"), ("Reverberator", "room impulse response")])
def test_augmenter_folder_errors(tmp_path, augmenter, what):
    import asr.audio

    from_folder = getattr(asr.audio, augmenter).from_folder
    with pytest.raises(InputError, match=f"no such {what} folder"):
        from_folder(tmp_path / "none")
    with pytest.raises(InputError, match=f"no wav, flac, ogg or sph files in the {what} folder"):
        from_folder(tmp_path)
    (tmp_path / "bad.wav").write_bytes(b"")
    with pytest.raises(InputError, match=f"no readable {what} files among 1 given"):
        from_folder(tmp_path)


def _rir(path, taps: dict[int, float], length: int = 4000, rate: int = SAMPLE_RATE, channels: int = 1):
    rir = np.zeros((length, channels), dtype=np.float32)
    for at, gain in taps.items():
        rir[at, 0] = gain
    soundfile.write(path, rir, rate, subtype="FLOAT")


def test_reverberator_plays_the_speech_through_the_room(tmp_path):
    from asr.audio import Reverberator

    wave = (0.1 * np.random.default_rng(0).standard_normal(SAMPLE_RATE)).astype(np.float32)
    gen = torch.Generator
    # A lone impulse after 100 samples of travel: cut at the direct path, it leaves the speech as it was.
    _rir(tmp_path / "dry.wav", {100: 0.3})
    out = Reverberator.from_folder(tmp_path)(wave, gen().manual_seed(0))
    assert out.shape == wave.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, wave, atol=1e-6)
    # The direct path and one echo 800 samples (50 ms) later at half its level: the echo is there, aligned
    # to the direct sound, and the result has the dry speech's power.
    (tmp_path / "dry.wav").unlink()
    _rir(tmp_path / "echo.wav", {100: 1.0, 900: 0.5}, channels=2)  # the first channel is the one used
    out = Reverberator.from_folder(tmp_path)(wave, gen().manual_seed(0))
    echo = wave.copy()
    echo[800:] += 0.5 * wave[:-800]
    np.testing.assert_allclose(out, echo * np.sqrt(np.mean(wave**2) / np.mean(echo**2)), atol=1e-5)
    # An RIR at another sample rate is resampled: the 50 ms echo stays 50 ms.
    (tmp_path / "echo.wav").unlink()
    _rir(tmp_path / "echo-8k.wav", {50: 1.0, 450: 0.5}, rate=8000)
    out = Reverberator.from_folder(tmp_path)(wave, gen().manual_seed(0))
    lag = np.correlate(out[:4000], wave[:4000], mode="full")[3999 + 700: 3999 + 900]
    assert 700 + int(np.argmax(lag)) == 800


def test_reverberator_draws_rooms_by_seed_and_leaves_the_asked_share_dry(tmp_path):
    from asr.audio import Reverberator

    for i in range(4):
        _rir(tmp_path / f"r{i}.wav", {0: 1.0, 200 * (i + 1): 0.7})
    wave = (0.1 * np.random.default_rng(1).standard_normal(8000)).astype(np.float32)
    room = Reverberator.from_folder(tmp_path)
    outs = [room(wave, torch.Generator().manual_seed(s)) for s in range(20)]
    assert len({o.tobytes() for o in outs}) == 4  # every room is drawn
    np.testing.assert_array_equal(outs[3], room(wave, torch.Generator().manual_seed(3)))
    half = Reverberator.from_folder(tmp_path, prob=0.3)
    dry = [half(wave, torch.Generator().manual_seed(s)) is wave for s in range(400)]
    assert 0.6 < np.mean(dry) < 0.8  # 70 % expected
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"reverberation must be in \(0, 1\]"):
            Reverberator.from_folder(tmp_path, prob=bad)


def test_reverberator_leaves_speech_dry_with_a_damaged_file(tmp_path):
    from asr.audio import Reverberator

    # A float file holding NaN, or only zeros, leaves the speech dry instead of poisoning the features.
    nan = np.zeros(100, dtype=np.float32)
    nan[10] = np.nan
    soundfile.write(tmp_path / "nan.wav", nan, SAMPLE_RATE, subtype="FLOAT")
    soundfile.write(tmp_path / "zeros.wav", np.zeros(100, dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")
    wave = _tone(SAMPLE_RATE, 1, seconds=0.5)[:, 0]
    room = Reverberator.from_folder(tmp_path)
    assert len(room.files) == 2
    assert all(room(wave, torch.Generator().manual_seed(s)) is wave for s in range(10))
