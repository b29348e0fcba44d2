"""`asr export`: a checkpoint -> a folder the torch-free runtime (`asr.runtime`) loads.

The folder's layout is `asr.runtime.bundle`'s: the network as ONNX (dynamic batch and time axes), the mel
filter bank, the normalisation statistics, the tokenizer, the decoder settings with copies of their LM
and lexicon, the calibration and the checkpoint's provenance, described by `model.json`.

The network goes out as it runs in PyTorch: `Model.forward(feats, lengths)` masks the padding before each
convolution with plain tensor operations that the exporter records as ONNX Less and Mul nodes over the
`lengths` input. Each bidirectional layer (`asr.model.BiLSTM`: two one-directional LSTMs, the backward one
over every utterance reversed within its own length) goes out as one ONNX LSTM node, direction
"bidirectional", with the lengths as its `sequence_lens`, which does the same: onnxruntime runs both
directions in one kernel and no gathers reverse the batch (`OnnxBiLSTM`; 12 % faster on batches of
3-s segments, BENCHMARKS.md). So a padded batch gives every utterance the log-probs it gets alone, in ONNX
as in PyTorch; `check` verifies it on every export, before the folder is written.

The exporter is torch.onnx's TorchScript one (`dynamo=False`). The default dynamo exporter traces with
torch.export, which in torch 2.11 specialises the time axis of the LSTMs (and the batch axis) to the
example's size ("Constraints violated ... specialized it to be a constant"), so its graph would take one
input length only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from asr.atomic import make_dirs
from asr.errors import InputError, InstallError
from asr.runtime import bundle as fmt

OPSET = 17  # LayerNorm is a single ONNX op from 17 on; onnxruntime has run it since 1.14
CHECK_TOLERANCE = 1e-3  # max |log-prob difference| between ONNX and PyTorch that the export accepts (fp32)


def export(model: str | Path | None, out: str | Path, int8: bool = False, overwrite: bool = False) -> dict:
    """Export `model` (a bundled model's name, a checkpoint or a folder with model.pt; None: the default) to the
    folder `out` (see `export_model`). -> the description written to model.json."""
    from asr.catalog import resolve
    from asr.model import load_checkpoint

    _need_onnx()
    _check_target(Path(out), overwrite)
    path = resolve(model)
    net, tokenizer, features, metadata = load_checkpoint(path)
    source = {"checkpoint": str(path), "sha256": _sha256(path)}
    return export_model(net, tokenizer, features, metadata, out, int8=int8, overwrite=overwrite, source=source,
                        base_dir=path.parent)


def export_model(net, tokenizer, features, metadata: dict, out: str | Path, int8: bool = False,
                 overwrite: bool = False, source: dict | None = None, base_dir: Path | None = None,
                 check_lengths: tuple[int, ...] = (97, 40, 9)) -> dict:
    """Write a loaded model (`asr.model.load_checkpoint`'s four parts) to the folder `out`, whole or not at all:
    it is built beside `out`, checked, and renamed into place. -> the description written to model.json.

    `int8`: the encoder's weights quantised to int8 by onnxruntime's dynamic quantisation (LSTM, MatMul and
    Conv weights; activations quantised on the fly). An existing export at `out` is replaced only with
    `overwrite`; a folder that is not an export is never replaced. `base_dir`: where the decoder settings'
    relative LM and lexicon paths are found (the checkpoint's folder). `check_lengths`: the input frames of
    the padded batch that `check` runs."""
    _need_onnx()
    out = Path(out)
    _check_target(out, overwrite)
    make_dirs(out.parent)
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise InputError(f"{out.parent}: cannot write here ({e.strerror or e})") from None
    try:
        onnx_path = work / fmt.ENCODER
        export_onnx(net, onnx_path, features.config.n_mels)
        difference = check(net, onnx_path, features.config.n_mels, check_lengths)
        if difference > CHECK_TOLERANCE:
            raise RuntimeError(f"the ONNX encoder's log-probs differ from PyTorch's by {difference:.2g} "
                               f"(more than {CHECK_TOLERANCE:g}): the export is wrong, not written")
        if int8:
            quantize(onnx_path)
        np.save(work / fmt.MEL_FILTERS, features._mel.numpy().astype(np.float32), allow_pickle=False)
        description = _describe(net, tokenizer, features, metadata, work, int8, difference, source or {}, base_dir)
        (work / fmt.MANIFEST).write_text(json.dumps(description, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
        _replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return description


def export_onnx(model, path: Path, n_mels: int) -> None:
    """The network as ONNX: inputs features (B, T, F) and lengths (B,), outputs log_probs (B, T', V) and
    out_lengths (B,), batch and time dynamic."""
    import torch

    from asr.onnx_lstm import with_onnx_lstms

    model = with_onnx_lstms(model)

    # Two utterances of unequal length, so that the masking is traced as it runs; short, since the trace records
    # the operations, not the sizes (the axes are dynamic), and the large preset's LSTMs cost per frame.
    feats = torch.randn(2, 16, n_mels)
    lengths = torch.tensor([16, 11])
    axes = {"features": {0: "batch", 1: "frames"}, "lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "out_frames"}, "out_lengths": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that an LSTM exported at one batch size may fail at another when its
        # initial states are inputs; here they are not (zeros of the run's batch size), and `check` runs 3.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (feats, lengths), str(path), input_names=["features", "lengths"],
                          output_names=["log_probs", "out_lengths"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)


def check(model, path: Path, n_mels: int, lengths: tuple[int, ...] = (97, 40, 9), seed: int = 0) -> float:
    """Max |log-prob difference| between the ONNX encoder and PyTorch on a padded batch of random utterances of
    `lengths` frames (and of that batch against each utterance alone, through ONNX)."""
    import torch

    from asr.runtime.encoder import Encoder

    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    feats = torch.randn(len(lengths), int(lengths.max()) + 3, n_mels, generator=generator)  # (B, T, F), padded
    with torch.inference_mode():
        expected, expected_lengths = model(feats, lengths)
    encoder = Encoder(path, threads=1)
    log_probs, out_lengths = encoder(feats.numpy(), lengths.numpy())
    if out_lengths.tolist() != expected_lengths.tolist():
        return float("inf")
    difference = 0.0
    for i, n in enumerate(out_lengths.tolist()):
        alone, _ = encoder(feats[i: i + 1, : int(lengths[i])].numpy(), lengths[i: i + 1].numpy())
        difference = max(difference, float(np.abs(log_probs[i, :n] - expected[i, :n].numpy()).max()),
                         float(np.abs(alone[0, :n] - log_probs[i, :n]).max()))
    return difference


def quantize(path: Path) -> None:
    """Replace the fp32 ONNX model at `path` with onnxruntime's dynamic int8 quantisation of it."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name("int8-" + path.name)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser logs advice on pre-processing at INFO/WARNING
    try:
        # One scale per output channel of each weight matrix (per gate row block of the LSTMs), not one per
        # matrix: on the English model's dev sets the int8 cost went from up to +0.33 WER points to +0.13
        # (BENCHMARKS.md, "Runtime accuracy"), for 1 % more file.
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().setLevel(level)
    quantized.replace(path)


def _describe(net, tokenizer, features, metadata: dict, work: Path, int8: bool, difference: float, source: dict,
              base_dir: Path | None) -> dict:
    """model.json's content; copies the tokenizer model and the decoder's LM and lexicon into `work`."""
    from dataclasses import asdict

    from asr import __version__
    from asr.audio import _POWER_FLOOR
    from asr.model import SUBSAMPLING, created_now

    tok = tokenizer.to_dict()
    if tok["kind"] == "bpe":
        (work / fmt.SENTENCEPIECE).write_bytes(tok.pop("model_proto"))
        tok["file"] = fmt.SENTENCEPIECE
    stats = {k: None if getattr(features, k) is None else getattr(features, k).tolist() for k in ("mean", "std")}
    plain = json.loads(json.dumps(metadata, default=str))  # tuples -> lists; anything exotic -> its str
    plain.pop("decoder", None)
    return {
        "format": fmt.FORMAT, "version": fmt.VERSION,
        "encoder": {"file": fmt.ENCODER, "precision": "int8" if int8 else "fp32", "opset": OPSET,
                    "subsampling": SUBSAMPLING, "max_abs_difference_from_pytorch": difference,
                    "inputs": {"features": "(batch, frames, n_mels) float32", "lengths": "(batch,) int64"},
                    "outputs": {"log_probs": "(batch, out_frames, vocab) float32", "out_lengths": "(batch,) int64"}},
        "model_config": asdict(net.config),
        "features": {"config": asdict(features.config), **stats, "mel_filters": fmt.MEL_FILTERS,
                     "power_floor": _POWER_FLOOR, "window": "periodic Hann of win_length, centred in n_fft",
                     "stft": "centred, zero padding"},
        "tokenizer": tok,
        "decoder": _copy_decoder_files(metadata.get("decoder") or {}, base_dir, work),
        "metadata": plain,
        "source": {**source, "exported": created_now(), "asr_version": __version__},
    }


def _copy_decoder_files(settings: dict, base_dir: Path | None, work: Path) -> dict:
    """The stored decoder settings, with their LM and lexicon copied into `work` and named by file name."""
    from asr.decoding import resolve_file

    settings = json.loads(json.dumps(settings))
    for key in ("lm", "lexicon"):
        if settings.get(key):
            source = Path(resolve_file(settings[key], base_dir, key))
            name = source.name
            if (work / name).exists():  # an LM and a lexicon of one name from two folders
                name = f"{key}-{name}"
            shutil.copyfile(source, work / name)
            settings[key] = name
    return settings


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not fmt.is_bundle(out):
            raise InputError(f"{out}: a folder that is not empty and holds no export; give a new or empty folder")
        if not overwrite:
            raise InputError(f"{out}: holds an export already; --overwrite replaces it")


def _replace(work: Path, out: Path) -> None:
    """Move the finished folder `work` to `out`, replacing an old export there (the old one is renamed aside
    first and removed last, so a failure leaves one whole export in place)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{work.name}")
        out.rename(old)
    try:
        work.rename(out)
    except OSError as e:
        if old is not None:
            old.rename(out)
        raise InputError(f"{out}: could not write the export here ({e.strerror or e})") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401 -- torch.onnx.export and the quantiser need it
        import onnxruntime  # noqa: F401 -- the export is checked by running it
    except ImportError as e:
        raise InstallError(f"asr export needs onnx and onnxruntime ({e}); pip install -e '.[export]'") from None
