"""Audio front end: any audio file -> 16 kHz mono float32 -> normalised log-mel features.

Dimensions: N samples, T frames (10 ms each), F mel bins.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr.errors import InputError

if TYPE_CHECKING:  # torch is imported where it is used: reading audio (load_audio, resample) serves
    import torch  # asr.segment and the torch-free runtime (asr.runtime) too

SAMPLE_RATE = 16_000
# What a folder search counts as audio: libsndfile's formats, and those the librosa fallback decodes.
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".sph", ".nist", ".aiff", ".aif",
                    ".au", ".m4a", ".webm", ".wma", ".aac"}
# Sample rates outside this range come from damaged headers. Rate 0 cannot be resampled, and a tiny one
# turns each sample into thousands (a 1 MB file at 1 Hz would become 32 GB at 16 kHz).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 1_000_000

log = logging.getLogger(__name__)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file of any format, rate and channel count as mono float32 (N,) at `sample_rate`.

    libsndfile (through soundfile) reads wav, flac, ogg, NIST sphere and mp3; anything else goes
    through librosa's fallback (audioread/ffmpeg where installed). Raises InputError naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    audio, rate = _read_any(path)
    check_sample_rate(path, rate)
    if audio.size == 0:
        raise InputError(f"{path}: contains no audio samples")
    if not np.all(np.isfinite(audio)):
        raise InputError(f"{path}: contains NaN or infinite samples")
    if rate != sample_rate:
        audio = resample(audio, rate, sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


def check_sample_rate(path: str | Path, rate: int) -> None:
    """Raise InputError naming the file when its header's sample rate is implausible."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InputError(f"{path}: invalid sample rate {rate} Hz in the header "
                         f"(expected {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)")


def _read_any(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, C)
        return data.mean(axis=1), int(rate)
    except Exception as sf_error:  # libsndfile does not know the format or the file is damaged
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():  # librosa warns that it falls back to audioread
                warnings.simplefilter("ignore")
                data, rate = librosa.load(str(path), sr=None, mono=True)
            return data.astype(np.float32), int(rate)
        except Exception:
            reason = str(sf_error).splitlines()[0] if str(sf_error) else type(sf_error).__name__
            reason = reason.replace(f"Error opening {str(path)!r}: ", "")  # the path is named once already
            raise InputError(f"{path}: cannot read audio ({reason})") from None


def audio_files(folder: Path) -> list[Path]:
    """Every file under `folder` (recursively) with an audio extension, in path order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling with soxr (high quality, linear time)."""
    if rate_in <= 0:
        raise ValueError(f"invalid sample rate {rate_in}")
    import soxr

    return soxr.resample(audio, rate_in, rate_out, quality="HQ").astype(np.float32)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header where possible (no decoding), else by decoding."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception:
        info = None
    if info is not None and info.frames > 0:
        check_sample_rate(path, info.samplerate)
        return info.frames / info.samplerate
    return len(load_audio(path)) / SAMPLE_RATE


_POWER_FLOOR = 1e-10  # added to the mel power before the log
_SILENCE_LOG = math.log(_POWER_FLOOR) + 1.0  # log-mel frames entirely below this hold no signal at all


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = SAMPLE_RATE
    n_mels: int = 80
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    # "global": every bin normalised by the training data's mean and std. "utterance": each utterance's
    # own per-bin mean subtracted first (cepstral mean normalisation, in the log-mel domain), which takes
    # out a fixed channel's colouring and the recording level, then the training data's mean and std.
    normalize: str = "global"

    def __post_init__(self):
        if self.normalize not in ("global", "utterance"):
            raise ValueError(f"feature normalisation must be 'global' or 'utterance', got {self.normalize!r}")

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate


class FeatureExtractor:
    """Log-mel features normalised per bin with mean/std from the training data, optionally after
    subtracting each utterance's own mean (`FeatureConfig.normalize`).

    The statistics travel in the checkpoint (`to_dict`), so transcription normalises exactly as
    training did. Before `set_stats` is called the features are returned without the training statistics.
    """

    def __init__(self, config: FeatureConfig = FeatureConfig(), mean=None, std=None):
        import torch

        from asr import torchaudio_api

        self.config = config
        # The Slaney mel filter bank (librosa's default, equal to librosa.filters.mel to 1e-7) from torchaudio:
        # librosa.filters imports scipy.signal, which costs a second at start-up. The STFT is torch's too, so
        # features batch on any device.
        self._mel = torchaudio_api.functional().melscale_fbanks(
            config.n_fft // 2 + 1, 0.0, config.sample_rate / 2, config.n_mels, config.sample_rate,
            norm="slaney", mel_scale="slaney").T.contiguous()  # (F, n_fft/2+1)
        self._window = torch.hann_window(config.win_length)
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32)

    def log_mel(self, waveform) -> torch.Tensor:
        """(N,) samples -> (T, F) log-mel, T = 1 + N // hop_length."""
        import torch

        c = self.config
        wave = torch.as_tensor(waveform, dtype=torch.float32)
        # Constant padding (not reflect) so that clips shorter than half a window still work.
        spec = torch.stft(
            wave, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
            window=self._window, center=True, pad_mode="constant", return_complex=True,
        )  # (n_fft/2+1, T)
        power = spec.real.square() + spec.imag.square()
        return torch.log(self._mel @ power + _POWER_FLOOR).T.contiguous()  # (T, F)

    def _centred(self, waveform) -> torch.Tensor:
        """log_mel, less the utterance's own per-bin mean when `normalize` is "utterance".

        Frames of digital silence (all samples zero: every bin at the log floor, ~-23 where speech sits
        near 0) are left out of the mean. The pauses of 8-bit audio are such frames; counted in, they
        dragged the mean down and shifted all the speech (the bundled model on 8-bit AN4 dev: 40.8 % WER
        with them in the mean, 12.6 % without). Audio with no such frames is unaffected.
        """
        feats = self.log_mel(waveform)
        if self.config.normalize == "utterance":
            live = feats.amax(1) > _SILENCE_LOG
            feats = feats - (feats[live] if live.any() else feats).mean(0)
        return feats

    def __call__(self, waveform) -> torch.Tensor:
        feats = self._centred(waveform)
        if self.mean is not None:
            feats = (feats - self.mean) / self.std
        return feats

    def set_stats(self, waveforms) -> None:
        """Compute per-bin mean and std over every frame of `waveforms` (an iterable of (N,) arrays)."""
        import torch

        total = torch.zeros(self.config.n_mels, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        frames = 0
        for wave in waveforms:
            feats = self._centred(wave).double()
            total += feats.sum(0)
            total_sq += feats.square().sum(0)
            frames += feats.shape[0]
        if frames == 0:
            raise ValueError("no audio to compute feature statistics from")
        mean = total / frames
        var = (total_sq / frames - mean.square()).clamp_min(1e-8)
        self.mean, self.std = mean.float(), var.sqrt().float()

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureExtractor:
        return cls(FeatureConfig(**d["config"]), d["mean"], d["std"])


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masking (Park et al., 2019) on normalised features; masked values are 0 (the mean).

    Hand-written rather than torchaudio's FrequencyMasking/TimeMasking: those draw from the global
    RNG, and here every draw comes from an explicit generator so augmented epochs are reproducible,
    and the time-mask width scales with the utterance length.
    """

    freq_masks: int = 2
    freq_width: int = 27
    time_masks: int = 2
    time_width_ratio: float = 0.05

    def __call__(self, feats: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        feats = feats.clone()  # (T, F)
        num_frames, num_bins = feats.shape
        for _ in range(self.freq_masks):
            self._mask(feats, 1, num_bins, self.freq_width, generator)
        time_width = max(1, math.floor(self.time_width_ratio * num_frames))
        for _ in range(self.time_masks):
            self._mask(feats, 0, num_frames, time_width, generator)
        return feats

    @staticmethod
    def _mask(feats, dim, size, max_width, generator):
        import torch

        width = int(torch.randint(0, min(max_width, size) + 1, (1,), generator=generator))
        if width == 0:
            return
        start = int(torch.randint(0, size - width + 1, (1,), generator=generator))
        feats.narrow(dim, start, width).zero_()


@dataclass(frozen=True)
class SpeedPerturb:
    """Speed perturbation (Ko et al., 2015): play the waveform `factor` times faster, tempo and pitch alike.

    Done as Kaldi and sox `speed` do it, by resampling: treating 16 kHz audio as if it had been
    recorded at 16 kHz x factor and converting it back to 16 kHz.
    """

    factors: tuple[float, ...] = (0.9, 1.0, 1.1)

    def __call__(self, wave: np.ndarray, generator: torch.Generator) -> np.ndarray:
        import torch

        factor = self.factors[int(torch.randint(len(self.factors), (1,), generator=generator))]
        if factor == 1.0:
            return wave
        return resample(wave, round(SAMPLE_RATE * factor), SAMPLE_RATE)


def _readable_files(files: list[str | Path], what: str) -> list[tuple[str, int, int]]:
    """(path, frames, sample rate) of the files soundfile can read; warns about the rest, and raises
    InputError when none is left."""
    import soundfile

    found, unusable = [], []
    for f in files:
        try:
            info = soundfile.info(str(f))
            if info.frames > 0 and info.samplerate > 0:
                found.append((str(f), info.frames, info.samplerate))
                continue
        except Exception:
            pass
        unusable.append(str(f))
    if unusable:
        log.warning("%d %s files cannot be read and are not used: %s", len(unusable), what, ", ".join(unusable[:5]))
    if not found:
        raise InputError(f"no readable {what} files among {len(files)} given")
    return found


def _folder_files(folder: str | Path, what: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such {what} folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".wav", ".flac", ".ogg", ".sph"})
    if not files:
        raise InputError(f"{folder}: no wav, flac, ogg or sph files in the {what} folder")
    return files


def _check_share(prob: float, what: str) -> None:
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"the share of utterances with {what} must be in (0, 1], got {prob}")


def _skips(prob: float, generator: torch.Generator) -> bool:
    """Whether this utterance goes through unchanged. Below 1 this makes one extra draw from the generator,
    so at 1 the draws (and the epochs) are those of an augmenter without the option."""
    import torch

    return prob < 1.0 and float(torch.rand(1, generator=generator)) >= prob


def _pick(files: list, generator: torch.Generator):
    import torch

    return files[int(torch.randint(len(files), (1,), generator=generator))]


class NoiseMixer:
    """Adds a random stretch of a random noise file at a signal-to-noise ratio drawn from `snr_db`.

    `prob` is the share of utterances that get noise; the rest pass through clean (see `_skips`).
    """

    def __init__(self, files: list[str | Path], snr_db: tuple[float, float] = (5.0, 20.0), prob: float = 1.0):
        _check_share(prob, "noise")
        self.files, self.snr_db, self.prob = _readable_files(files, "noise"), snr_db, prob

    @classmethod
    def from_folder(cls, folder: str | Path, snr_db: tuple[float, float] = (5.0, 20.0),
                    prob: float = 1.0) -> NoiseMixer:
        return cls(_folder_files(folder, "noise"), snr_db, prob)

    def __call__(self, wave: np.ndarray, generator: torch.Generator) -> np.ndarray:
        import soundfile
        import torch

        if _skips(self.prob, generator):
            return wave
        path, frames, rate = _pick(self.files, generator)
        want = math.ceil(len(wave) * rate / SAMPLE_RATE)
        start = int(torch.randint(max(1, frames - want + 1), (1,), generator=generator))
        # Read only the stretch needed (seekable formats), never the whole noise file.
        noise, _ = soundfile.read(path, start=start, frames=min(want, frames), dtype="float32", always_2d=True)
        noise = noise.mean(axis=1)
        if rate != SAMPLE_RATE:
            noise = resample(noise, rate, SAMPLE_RATE)
        noise = np.resize(noise, len(wave))  # loops a noise file shorter than the utterance
        snr = self.snr_db[0] + (self.snr_db[1] - self.snr_db[0]) * float(torch.rand(1, generator=generator))
        signal_power, noise_power = float(np.mean(wave**2)), float(np.mean(noise**2))
        if noise_power == 0.0 or signal_power == 0.0:
            return wave
        scale = math.sqrt(signal_power / (noise_power * 10 ** (snr / 10)))
        return (wave + scale * noise).astype(np.float32)


class Reverberator:
    """Plays the utterance in a room: convolves it with a room impulse response (RIR) drawn from `files`
    (Ko et al., 2017, "A study on data augmentation of reverberant speech").

    The RIR is cut to start at its direct-path peak, so the speech is not delayed and keeps its length;
    the reverberant speech is scaled back to the dry speech's power. An RIR file with several channels
    gives its first (one microphone). `prob` is the share of utterances that get a room; the rest pass
    through dry (see `_skips`). RIRs from real rooms (e.g. OpenSLR's RIRS_NOISES) or simulated ones
    (`recipes/an4/make_rirs.py`) both work.
    """

    MAX_SECONDS = 4.0  # longer files are cut: an RT60 of 2 s has decayed by 120 dB within 4 s

    def __init__(self, files: list[str | Path], prob: float = 1.0):
        _check_share(prob, "reverberation")
        self.files, self.prob = _readable_files(files, "room impulse response"), prob

    @classmethod
    def from_folder(cls, folder: str | Path, prob: float = 1.0) -> Reverberator:
        return cls(_folder_files(folder, "room impulse response"), prob)

    def __call__(self, wave: np.ndarray, generator: torch.Generator) -> np.ndarray:
        import soundfile
        from scipy.signal import fftconvolve

        if _skips(self.prob, generator):
            return wave
        path, frames, rate = _pick(self.files, generator)
        rir, _ = soundfile.read(path, frames=min(frames, int(self.MAX_SECONDS * rate)), dtype="float32",
                                always_2d=True)
        rir = rir[:, 0]
        if not np.isfinite(rir).all():  # a damaged float file: NaN would poison the features and the loss
            return wave
        if rate != SAMPLE_RATE:
            rir = resample(rir, rate, SAMPLE_RATE)
        rir = rir[int(np.argmax(np.abs(rir))):]
        dry_power = float(np.mean(wave.astype(np.float64) ** 2))
        wet = fftconvolve(wave, rir)[: len(wave)]
        wet_power = float(np.mean(wet.astype(np.float64) ** 2))
        if dry_power == 0.0 or wet_power == 0.0:
            return wave
        return (wet * math.sqrt(dry_power / wet_power)).astype(np.float32)
