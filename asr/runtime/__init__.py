"""The torch-free runtime: transcribe with a model that `asr export` wrote, with onnxruntime and numpy.

An exported model is a folder (`asr.runtime.bundle`): the encoder as ONNX, the mel filter bank, the
normalisation statistics, the tokenizer, the decoder settings with their LM and lexicon, and the
confidence calibration. The pipeline is the PyTorch one's, stage for stage:

    audio ─asr.segment─▶ segments ─features (numpy)─▶ log-mel ─encoder (onnxruntime)─▶ log-probs
          ─decoding (numpy greedy, or flashlight-text beam search)─▶ words, times, confidences ─asr.outputs─▶ files

Nothing here imports torch or torchaudio, nor may anything it imports: the pieces of `asr` it shares
(audio reading, segmentation, text, word times, outputs, confidence, decoder settings) import torch only
inside the functions that need it. `tests/test_runtime.py` runs the runtime with torch made unimportable.

    from asr.runtime import load
    result = load("exported/an4").transcribe("examples/an4-dev-example.wav")
"""

from __future__ import annotations


def load(path=None, threads: int | None = None, **decoder):
    """An exported model folder, or a bundled model's name (None: the default, `english`) -> a
    `asr.runtime.transcribe.Transcriber`. Keyword arguments choose the decoder over the one the folder
    stores, as in `asr.load_model` (see `asr.decoding.SETTINGS`)."""
    from asr.catalog import resolve_export
    from asr.runtime.transcribe import Transcriber

    return Transcriber.load(resolve_export(path), threads=threads, decoder=decoder)
