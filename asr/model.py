"""The network: convolutional subsampling x4 -> bidirectional LSTM stack -> linear -> CTC log-probs.

Dimensions: B batch, T input frames (10 ms), T' = T/4 output frames (40 ms), F mel bins,
C conv channels, H LSTM hidden size per direction, V vocabulary (blank = 0).

Also here: named presets, self-describing checkpoints (one file, `weights_only=True`), and where a model
runs: the device (`resolve_device`, shared by every command taking --device) and the CPU threads.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from asr.atomic import atomic_open
from asr.errors import InputError

CHECKPOINT_FORMAT = "asr-bilstm-ctc"
CHECKPOINT_VERSION = 2  # 2: the BiLSTM as one-directional LSTMs per layer and direction; 1 loads too
# An ensemble's file holds `members` (a list of state_dicts) instead of `state_dict`; it is marked version 3
# so that code from before ensembles refuses it by name instead of failing on the missing key.
ENSEMBLE_VERSION = 3
SUBSAMPLING = 4  # input frames per output frame


@dataclass(frozen=True)
class ModelConfig:
    n_mels: int = 80
    vocab_size: int = 29
    conv_channels: int = 32
    hidden_size: int = 256
    num_layers: int = 3
    dropout: float = 0.2


# Sizes are for the 29-symbol character vocabulary; `asr train --help` prints each one's parameter count.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(conv_channels=8, hidden_size=64, num_layers=1, dropout=0.0),
    "small": ModelConfig(conv_channels=32, hidden_size=256, num_layers=3, dropout=0.2),
    "medium": ModelConfig(conv_channels=32, hidden_size=320, num_layers=3, dropout=0.2),
    "base": ModelConfig(conv_channels=32, hidden_size=512, num_layers=4, dropout=0.2),
    "large": ModelConfig(conv_channels=32, hidden_size=1024, num_layers=5, dropout=0.3),
}


def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frames after the two stride-2 convolutions (kernel 3, padding 1): ceil(T / 2), twice."""
    for _ in range(2):
        lengths = (lengths + 1) // 2
    return lengths


class Model(nn.Module):
    """Maps (features, lengths) to (log-probs, output lengths); nothing else lives here.

    Subsampling by 4 gives 40 ms output frames. That is the limit for characters: CTC needs at
    least one frame per symbol (two between repeated letters), and fast speech reaches ~15
    characters per second, i.e. one per 65 ms.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config.conv_channels
        self.conv1 = nn.Conv2d(1, c, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c, c, kernel_size=3, stride=2, padding=1)
        conv_bins = (config.n_mels + 3) // 4
        self.proj = nn.Linear(c * conv_bins, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size)
        self.lstm = BiLSTM(config.hidden_size, config.hidden_size, config.num_layers, config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(2 * config.hidden_size, config.vocab_size)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, intermediate: int | None = None):
        """feats (B, T, F), lengths (B,) -> log-probs (B, T', V), output lengths (B,).

        With `intermediate=k` (1 <= k < num_layers), also the log-probs that the output layer gives for
        the k-th LSTM layer's output (B, T', V), a third value: intermediate CTC (Lee & Watanabe, 2021)
        trains with a loss on them too, which adds no parameter.
        """
        x = feats.unsqueeze(1)  # (B, 1, T, F)
        # Zero the padding before and between the convolutions, so that a frame near the end of
        # an utterance sees the same zeros batched as alone (the conv's own zero padding).
        x = _mask_time(x, lengths)
        x = torch.relu(self.conv1(x))  # (B, C, T/2, F/2)
        lengths_half = (lengths + 1) // 2
        x = _mask_time(x, lengths_half)
        x = torch.relu(self.conv2(x))  # (B, C, T', F/4)
        out_lengths = output_lengths(lengths)
        b, c, t, f = x.shape
        x = x.permute(0, 2, 1, 3).reshape(b, t, c * f)  # (B, T', C*F/4)
        x = self.dropout(self.norm(self.proj(x)))  # (B, T', H)
        x, inner = self.lstm(x, out_lengths.to(x.device), keep=intermediate)  # (B, T', 2H) each
        log_probs = self.out(self.dropout(x)).log_softmax(dim=-1)  # (B, T', V)
        if intermediate is None:
            return log_probs, out_lengths
        return log_probs, out_lengths, self.out(self.dropout(inner)).log_softmax(dim=-1)


class BiLSTM(nn.Module):
    """A stack of bidirectional LSTM layers over a zero-padded batch, exact for every utterance's length.

    Each layer is two one-directional nn.LSTMs. The backward one reads every utterance reversed within
    its own length, so it starts at the utterance's last frame, never in padding, as packing would
    make it. Packing is what nn.LSTM offers for this, but packed sequences run step by step in
    PyTorch's own CPU kernel, and plain tensors go to oneDNN's fused one, which was 2-4x faster for
    inference and more for training here (BENCHMARKS.md). Outputs at padded frames are zero.

    Checkpoints written before this class (one multi-layer bidirectional nn.LSTM, keys
    `weight_ih_l0`, `weight_ih_l0_reverse`, ...) load into it: see `_from_nn_lstm_keys`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.ModuleDict({"fwd": nn.LSTM(n, hidden_size, batch_first=True),
                           "bwd": nn.LSTM(n, hidden_size, batch_first=True)}) for n in sizes)
        self.dropout = nn.Dropout(dropout if num_layers > 1 else 0.0)  # between layers, as nn.LSTM's
        self._register_load_state_dict_pre_hook(_from_nn_lstm_keys)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                keep: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, D), lengths (B,) on x's device -> (B, T, 2H), and the output of layer `keep` (counted
        from 1; (B, T, 2H)) or None."""
        if keep is not None and not 1 <= keep < len(self.layers):
            raise ValueError(f"intermediate layer must be in 1..{len(self.layers) - 1}, not {keep}")
        kept = None
        steps = torch.arange(x.shape[1], device=x.device)
        valid = steps[None, :] < lengths[:, None]  # (B, T)
        # The permutation that reverses each row's first lengths[b] frames and leaves its padding in
        # place; it is its own inverse.
        order = torch.where(valid, lengths[:, None] - 1 - steps[None, :], steps[None, :])[:, :, None]
        for i, layer in enumerate(self.layers):
            if i:
                x = self.dropout(x)
            forward, _ = layer["fwd"](x)
            backward, _ = layer["bwd"](x.gather(1, order.expand(-1, -1, x.shape[2])))
            x = torch.cat([forward, backward.gather(1, order.expand(-1, -1, backward.shape[2]))], dim=2)
            if i + 1 == keep:
                kept = x * valid[:, :, None]
        return x * valid[:, :, None], kept


def _from_nn_lstm_keys(state_dict, prefix, *_):
    """Rename a multi-layer bidirectional nn.LSTM's weights (`{prefix}weight_ih_l1_reverse`) to BiLSTM's
    (`{prefix}layers.1.bwd.weight_ih_l0`), in place, before loading."""
    for key in [k for k in state_dict if k.startswith(prefix) and "_l" in k[len(prefix):]]:
        name, _, layer = key[len(prefix):].rpartition("_l")
        direction = "fwd"
        if layer.endswith("_reverse"):
            layer, direction = layer[: -len("_reverse")], "bwd"
        if name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") and layer.isdigit():
            state_dict[f"{prefix}layers.{layer}.{direction}.{name}_l0"] = state_dict.pop(key)


def _mask_time(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero frames at or past `lengths` in x (B, C, T, F)."""
    t = x.shape[2]
    valid = torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, T)
    return x * valid[:, None, :, None]


def count_parameters(config: ModelConfig) -> int:
    """Parameter count of a config, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return sum(p.numel() for p in Model(config).parameters())


def describe(config: ModelConfig, with_preset: bool = True) -> str:
    """The network's shape in words, and the preset it matches (dropout, vocabulary and mels aside)."""
    text = f"{config.num_layers} x BiLSTM {config.hidden_size}, conv {config.conv_channels} ch"
    if not with_preset:
        return text
    shape = (config.conv_channels, config.hidden_size, config.num_layers)
    names = [n for n, c in PRESETS.items() if (c.conv_channels, c.hidden_size, c.num_layers) == shape]
    return f"{text} ({names[0]})" if names else text


def preset_config(name: str, vocab_size: int, n_mels: int = 80) -> ModelConfig:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], vocab_size=vocab_size, n_mels=n_mels)


class Ensemble(nn.Module):
    """Several models of one config, decoded as one: the mean of their frame posteriors.

    Every member subsamples alike, so their output frames line up, but the mean helps only where their
    CTC spikes do too: for runs fine-tuned from one checkpoint. Two AN4 runs from different starts put
    23 % of the same symbols' spikes on different frames, and their mean fell to blank between the two:
    14.77 % greedy WER against its members' 8.86 and 11.82 % (models/an4/MODEL.md). The mean is of
    probabilities, not log-probabilities, so a symbol one member is sure of survives another's ruling it
    out: on AN4 dev that gave 8.71 % greedy WER for two runs, the mean of log-probabilities 9.16 %
    (for those two runs, fine-tuned from the same weights, their weight average did as well with one
    forward pass).
    """

    def __init__(self, members: list[Model]):
        super().__init__()
        if len({m.config for m in members}) != 1:
            raise ValueError("ensemble members must share one model config")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As `Model.forward` without `intermediate`: log of the members' mean posteriors (B, T', V), lengths."""
        outputs = [m(feats, lengths) for m in self.members]
        log_probs = torch.stack([lp for lp, _ in outputs]).logsumexp(dim=0) - math.log(len(outputs))
        return log_probs, outputs[0][1]


# --- checkpoints ----------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, model: Model, tokenizer, features, metadata: dict,
                    train_state: dict | None = None) -> None:
    """Write one self-describing file atomically (temporary file in the same folder, then rename).

    Only tensors, numbers, strings, bytes, lists and dicts go in, so `weights_only=True` reads it.
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": asdict(model.config),
        "tokenizer": tokenizer.to_dict(),
        "features": features.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata,
    }
    if train_state is not None:
        state["train_state"] = train_state
    atomic_torch_save(state, path)


def created_now() -> str:
    """The `created` field of checkpoint metadata: local time in ISO 8601 with its UTC offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def atomic_torch_save(obj, path: str | Path) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict safely; InputError for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"{path}: not a loadable checkpoint: {_unloadable(path, e)}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not an asr checkpoint")
    if state.get("version", 0) > ENSEMBLE_VERSION:
        raise InputError(f"{path}: checkpoint version {state['version']} is newer than this code")
    if not isinstance(state.get("state_dict", state.get("members")), dict | list):
        raise InputError(f"{path}: checkpoint holds no weights (neither state_dict nor members)")
    return state


def _unloadable(path: Path, error: Exception) -> str:
    """Why torch.load refused `path`, in words: its own messages are bare pickle opcodes ("101", the
    byte 'e' of a text file) or paragraphs about zip internals."""
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        return "the file is empty"
    if not head.startswith(b"PK"):  # torch.save writes a zip archive
        return f"it is no PyTorch file (it begins with {head!r}; torch.save writes zip archives)"
    if isinstance(error, pickle.UnpicklingError) and "weights only" in str(error).lower():
        return "it holds Python objects besides tensors and plain data, which are not loaded (weights_only)"
    return "the PyTorch file is damaged or cut short (copy it again)"


def checkpoint_weights(state: dict) -> list[dict]:
    """The state_dicts a checkpoint dict holds: its one `state_dict`, or an ensemble's `members`."""
    return state.get("members") or [state["state_dict"]]


def single_model_weights(state: dict, path: str | Path, use: str) -> dict:
    """The state_dict of a one-model checkpoint; InputError naming `path` if it is an ensemble, which `use`
    (e.g. "--init") cannot take."""
    if "members" in state:
        raise InputError(f"{path}: is an ensemble of {len(state['members'])} models; {use} takes one model "
                         "(one of the checkpoints it was made of, or their average)")
    return state["state_dict"]


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """-> (model in eval mode, tokenizer, feature extractor, metadata); the model is an `Ensemble` when
    the file holds several members. InputError for a device this machine does not have (`resolve_device`)."""
    from asr.audio import FeatureExtractor
    from asr.text import tokenizer_from_dict

    device = resolve_device(device)
    state = read_checkpoint(path)
    members = []
    for weights in checkpoint_weights(state):
        member = Model(ModelConfig(**state["model_config"]))
        member.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
        members.append(member)
    model = members[0] if len(members) == 1 else Ensemble(members)
    model.to(device).eval()
    return (model, tokenizer_from_dict(state["tokenizer"]),
            FeatureExtractor.from_dict(state["features"]), state.get("metadata", {}))


# --- devices and CPU threads ----------------------------------------------------------------------


def resolve_device(name: str | torch.device, allow_auto: bool = False) -> torch.device:
    """A device name (`--device`) -> torch.device, or InputError in one line naming it and the devices this
    machine has. With `allow_auto` (`asr train`), "auto" is the first CUDA GPU if there is one, else the CPU.
    Every command that takes --device calls this (through `load_checkpoint` where it loads a model), so none
    ends in torch's traceback."""
    text = str(name)
    if text == "auto" and allow_auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device {text!r}: not a device name (cpu, cuda or cuda:N for a GPU); this machine "
                         f"has {', '.join(available_devices())}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        present = torch.cuda.device_count() > (device.index or 0)
    else:  # mps, xpu, ...: the same question, asked by allocating there
        try:
            torch.empty(0, device=device)
            present = device.type != "meta"
        except Exception:
            present = False
    if not present:
        raise InputError(f"device {text}: not available on this machine, which has "
                         f"{', '.join(available_devices())}")
    return device


def available_devices() -> list[str]:
    """The devices a model can run on here, by name: cpu, then cuda:0, cuda:1, ..., and mps on a Mac."""
    names = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return names + (["mps"] if torch.backends.mps.is_available() else [])


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity mask (taskset, container cpusets), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def set_threads(threads: int | None = None, busy: int = 0) -> int:
    """Set torch's CPU threads to `threads`, or by default to the cores this process may use less `busy`
    (our own processes computing beside it, such as DataLoader workers), at least 1. -> the count set.

    torch's own default is every physical core whatever else runs there. Its threads wait for each other at
    every operation, so one descheduled thread stalls all: with one of two cores busy, training ran at
    2.4-4.7 audio-s/s with torch's default against 35-49 with one thread (issue 30).
    """
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    count = threads or max(1, available_cores() - busy)
    torch.set_num_threads(count)
    return count


# --- reduced precision for inference --------------------------------------------------------------

PRECISIONS = ("auto", "fp32", "bf16", "int8")


class _Autocast(nn.Module):
    """Runs the wrapped model under autocast to `dtype` and returns float32 log-probs."""

    def __init__(self, model: Model, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(feats.device.type, dtype=self.dtype):
            log_probs, out_lengths = self.model(feats, lengths)
        return log_probs.float(), out_lengths


def int8_supported() -> bool:
    return any(engine in torch.backends.quantized.supported_engines for engine in ("x86", "fbgemm", "qnnpack"))


def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated, and slow."""
    try:  # torch.cpu's feature probes are underscored but have been there since torch 2.1
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:
        return False


def for_inference(model: Model, precision: str = "auto") -> tuple[nn.Module, str]:
    """-> (the model to run, the precision it runs in), for a model in eval mode.

    fp32: as trained. bf16: autocast (matmuls in bfloat16, fast where the CPU has AVX512-BF16 or AMX,
    and on GPUs). int8 (CPU only): the LSTM and linear layers' weights quantised to int8, their inputs
    quantised on the fly per batch ("dynamic" quantisation); the convolutions stay float. auto: bf16 on
    a CPU with native bfloat16, else fp32. On such a CPU bf16 made transcription 1.6-1.8x faster at the
    same AN4 dev WER, while int8 was no faster than oneDNN's fp32 LSTM, and cost up to 0.6 points of
    greedy WER on earlier AN4 models (BENCHMARKS.md, "Reduced precision").
    """
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = next(model.parameters()).device
    if precision == "auto":
        precision = "bf16" if device.type == "cpu" and native_bf16() else "fp32"
    if precision == "fp32":
        return model, precision
    if precision == "bf16":
        return _Autocast(model, torch.bfloat16), precision
    if device.type != "cpu":
        raise InputError(f"--precision int8 runs on the CPU only, not on {device}")
    if not int8_supported():
        raise InputError("--precision int8: this PyTorch build has no quantised CPU engine; use fp32 or bf16")
    import warnings

    # torch.ao.quantization is deprecated in favour of torchao, but torchao quantises nn.Linear only, and
    # the LSTM is nearly all of this model's work; torch.ao's dynamic LSTM ships in the torch we pin (2.11).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8), precision
