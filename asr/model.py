"""The network: convolutional subsampling x4 -> bidirectional LSTM stack -> linear -> CTC log-probs.

Dimensions: B batch, T input frames (10 ms), T' = T/4 output frames (40 ms), F mel bins,
C conv channels, H LSTM hidden size per direction, V vocabulary (blank = 0).

Also here: named presets and self-describing checkpoints (one file, `weights_only=True`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.atomic import atomic_open
from asr.errors import InputError

CHECKPOINT_FORMAT = "asr-bilstm-ctc"
CHECKPOINT_VERSION = 1
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
        self.lstm = nn.LSTM(
            config.hidden_size, config.hidden_size, num_layers=config.num_layers,
            bidirectional=True, batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(2 * config.hidden_size, config.vocab_size)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, F), lengths (B,) -> log-probs (B, T', V), output lengths (B,)."""
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
        # Packing makes the backward direction start at each utterance's own last frame, never padding.
        packed = pack_padded_sequence(x, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
        x, _ = self.lstm(packed)
        x, _ = pad_packed_sequence(x, batch_first=True, total_length=t)  # (B, T', 2H)
        logits = self.out(self.dropout(x))  # (B, T', V)
        return logits.log_softmax(dim=-1), out_lengths


def _mask_time(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero frames at or past `lengths` in x (B, C, T, F)."""
    t = x.shape[2]
    valid = torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, T)
    return x * valid[:, None, :, None]


def count_parameters(config: ModelConfig) -> int:
    """Parameter count of a config, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return sum(p.numel() for p in Model(config).parameters())


def preset_config(name: str, vocab_size: int, n_mels: int = 80) -> ModelConfig:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], vocab_size=vocab_size, n_mels=n_mels)


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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a loadable checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not an asr checkpoint")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint version {state['version']} is newer than this code")
    return state


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """-> (model in eval mode, tokenizer, feature extractor, metadata)."""
    from asr.audio import FeatureExtractor
    from asr.text import tokenizer_from_dict

    state = read_checkpoint(path)
    model = Model(ModelConfig(**state["model_config"]))
    weights = {k: v.float() if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    model.load_state_dict(weights)
    model.to(device).eval()
    return (model, tokenizer_from_dict(state["tokenizer"]),
            FeatureExtractor.from_dict(state["features"]), state.get("metadata", {}))
