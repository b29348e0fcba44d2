"""Options shared by `asr evaluate`, `asr transcribe` and `asr lm tune`: decoding, precision, device and threads."""

from __future__ import annotations

from asr.errors import InputError


def add_decoder_options(p, nbest: bool = False) -> None:
    g = p.add_argument_group("decoding", "Defaults come from the model when `asr lm tune --save` stored settings "
                                         "in it, else greedy decoding.")
    g.add_argument("--decoder", choices=["greedy", "beam"],
                   help="greedy (best path) or beam (CTC prefix beam search); beam when --lm or --lexicon is given")
    g.add_argument("--beam-size", type=int, metavar="N", help="hypotheses kept by beam search (default 50)")
    g.add_argument("--beam-threshold", type=float, metavar="F",
                   help="drop hypotheses scoring this far below the best (default 25)")
    g.add_argument("--beam-size-token", type=int, metavar="N",
                   help="tokens beam search tries at each frame, the most probable first (default: all)")
    g.add_argument("--lm", metavar="FILE",
                   help="KenLM n-gram model over words (.arpa, .arpa.gz or KenLM binary), e.g. from `asr lm build`")
    g.add_argument("--lexicon", metavar="FILE",
                   help="lines 'word tok tok ...' of the words beam search may output (default with --lm: the "
                        "LM's words spelled with the model's tokens; '|' stands for the space token)")
    g.add_argument("--lexicon-free", action="store_true", default=None,
                   help="no lexicon: any token sequence; an --lm is then over tokens (`asr lm build --tokens`)")
    g.add_argument("--lm-weight", type=float, metavar="F", help="weight of the LM score (default 1.0)")
    g.add_argument("--word-score", type=float, metavar="F", help="score added per word (default 0)")
    g.add_argument("--hotword", action="append", metavar="WORD[:BOOST]", dest="hotwords",
                   help="raise this word's score by BOOST (default 5) in beam search over words (--lm or "
                        "--lexicon); the word joins the lexicon if it is not there. Repeatable")
    if nbest:
        g.add_argument("--nbest", type=int, metavar="N",
                       help="with beam search, also keep the N-1 next best transcripts (json: alternatives)")


def decoder_overrides(args) -> dict:
    """The decoder flags given on the command line, as `asr.decoding.decoder_from_settings` keys."""
    keys = ("decoder", "beam_size", "beam_threshold", "beam_size_token", "lm", "lexicon", "lexicon_free", "lm_weight",
            "word_score", "nbest")
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if args.hotwords:
        overrides["hotwords"] = [_hotword(h) for h in args.hotwords]
    for key in ("beam_size", "beam_size_token", "nbest"):
        if overrides.get(key, 1) < 1:
            raise InputError(f"--{key.replace('_', '-')} must be at least 1")
    return overrides


def _hotword(spec: str) -> tuple[str, float]:
    word, sep, boost = spec.rpartition(":") if ":" in spec else (spec, "", "5")
    try:
        value = float(boost)
    except ValueError:
        raise InputError(f"--hotword {spec}: BOOST must be a number, as in WORD:5") from None
    if not word.strip() or len(word.split()) != 1:
        raise InputError(f"--hotword {spec}: give one word, as in WORD or WORD:5")
    return word.strip(), value


def add_model(p) -> None:
    """--model and --engine of a command that runs a model on files or streams (`asr.catalog.engine_for`)."""
    p.add_argument("--model", help="bundled model name (asr models lists them: english, an4), checkpoint, folder "
                   "with model.pt, or folder from asr export (default: english)")
    p.add_argument("--engine", choices=["auto", "pytorch", "onnx"], default="auto",
                   help="what runs the model: pytorch (a checkpoint), or onnx (an exported folder, or a bundled "
                        "model's export, through the torch-free runtime; docs/runtime.md). auto (default): the "
                        "checkpoint where there is one and torch is installed, else the export")


def segment_options(args) -> dict:
    """The `transcribe()` keyword arguments of the "long recordings" flags (--max-segment-seconds, ...)."""
    return dict(batch_size=args.batch_size, max_segment_seconds=args.max_segment_seconds,
                min_segment_seconds=args.min_segment_seconds,
                split_pause_seconds="model" if args.split_pause is None else args.split_pause or None)


def add_precision(group) -> None:
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default="auto",
                       help="arithmetic of the model: auto (bf16 on a CPU with native bfloat16, else fp32), fp32, "
                            "bf16, or int8 (dynamic quantisation of the LSTM and linear layers, CPU only) "
                            "(default auto)")


def add_running(group) -> None:
    """--device, --precision and --threads of a command that runs a model: `set_up_running` applies them."""
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    add_precision(group)
    group.add_argument("--threads", type=int, metavar="N",
                       help="CPU threads for the model (default: every core this process may use, by "
                            "os.sched_getaffinity). Threads wait for each other at every step, so on a machine "
                            "where other work keeps cores busy, give fewer: the free cores")


def set_up_running(args) -> None:
    """Check --device (one line naming it and the devices there are, for one this machine lacks) and set the
    torch threads, before anything is read or loaded."""
    from asr.model import resolve_device, set_threads

    resolve_device(args.device)
    set_threads(args.threads)
