"""A BiLSTM-CTC speech recognizer: audio -> log-mel -> BiLSTM -> CTC -> text.

Modules follow the pipeline: ``audio`` (loading, features), ``text`` (normalisation, tokenizers),
``model`` (network, checkpoints), ``decoding``, ``metrics``, ``data`` (manifests, corpora, batches),
``train``, ``transcribe`` and ``cli``. Importing the package is cheap; torch loads on first use.
"""

__version__ = "0.1.0"


def load_model(path=None, device: str = "cpu", precision: str = "auto", **decoder):
    """Load a checkpoint (default: the bundled model) as a Transcriber with a `transcribe(audio)` method.

    `precision`: auto, fp32, bf16 or int8 (see `asr.model.for_inference`). Keyword arguments choose the
    decoder over the one the checkpoint stores, e.g.
    ``load_model("m.pt", decoder="beam", lm="lm.arpa", lm_weight=0.8)`` (see `asr.decoding.SETTINGS`).
    """
    from asr.transcribe import Transcriber

    return Transcriber.load(path, device, decoder=decoder, precision=precision)
