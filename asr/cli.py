"""The `asr` command: prepare, train, evaluate, transcribe. argparse only; heavy imports happen per command.

Every subcommand exits 0 on success, 1 when something failed (with a one-line `error:` message per
problem on stderr, never a traceback for bad input) and 2 for invalid usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from asr.errors import InputError

log = logging.getLogger("asr")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.func(args) or 0
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    from asr import __version__

    parser = argparse.ArgumentParser(prog="asr", description="BiLSTM-CTC speech recognition.")
    parser.add_argument("--version", action="version", version=f"asr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_prepare(sub)
    _add_doctor(sub)
    _add_train(sub)
    _add_average(sub)
    _add_evaluate(sub)
    _add_lm(sub)
    _add_transcribe(sub)
    return parser


# --- prepare --------------------------------------------------------------------------------------


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="scan a corpus into JSONL manifests",
                       description="Scan a corpus layout on disk into JSONL manifests.")
    corpora = p.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    an4 = corpora.add_parser("an4", help="CMU AN4 (official layout: etc/, wav/an4_clstk, wav/an4test_clstk)",
                             description="Write OUT/an4-train.jsonl, and OUT/an4-test.jsonl when the test half "
                                         "is present. With --dev-fraction, whole speakers (the same share of "
                                         "female and male ones) are moved from the training half to "
                                         "OUT/an4-dev.jsonl.")
    an4.add_argument("--root", required=True, help="folder holding etc/ and wav/")
    an4.add_argument("--out", help="folder for the manifests (default: the --root folder)")
    an4.add_argument("--dev-fraction", type=float, default=0.0,
                     help="share of training utterances held out as a dev set, by speaker (default: none)")
    an4.add_argument("--seed", type=int, default=0, help="seed for choosing dev speakers")
    an4.set_defaults(func=_prepare_an4)
    ls = corpora.add_parser("librispeech", help="LibriSpeech subsets found under --root",
                            description="Write OUT/<subset>.jsonl for every subset found under ROOT "
                                        "(e.g. ROOT/LibriSpeech/train-clean-100).")
    ls.add_argument("--root", required=True, help="folder holding LibriSpeech/<subset>/ or the subsets")
    ls.add_argument("--out", help="folder for the manifests (default: the --root folder)")
    ls.add_argument("--download", nargs="+", metavar="NAME",
                    help="first download these from OpenSLR into ROOT (resumable, MD5-checked): subsets "
                         "(dev-clean, train-clean-100, ...), extracted to ROOT/LibriSpeech/<subset>, and LM files "
                         "(3-gram.pruned.1e-7.arpa.gz, librispeech-lexicon.txt, ...), kept as ROOT/<file>")
    ls.add_argument("--mirror", metavar="URL",
                    help="OpenSLR mirror's resources folder, e.g. https://openslr.elda.org/resources "
                         "(default: $ASR_LIBRISPEECH_MIRROR or https://www.openslr.org/resources)")
    ls.add_argument("--keep-archives", action="store_true",
                    help="keep the downloaded .tar.gz files after extracting them (default: delete)")
    ls.set_defaults(func=_prepare_librispeech)
    folder = corpora.add_parser("folder", help="your own audio files, each with a <name>.txt transcript beside it",
                                description="Write one manifest of every audio file (any format, any folder "
                                            "depth) under ROOT that has a same-name .txt transcript beside it "
                                            "(UTF-8). The id is the path below ROOT without its extension "
                                            "(anna/001 for ROOT/anna/001.wav). Audio without a transcript, with "
                                            "an empty one, or that cannot be read is skipped and reported.")
    folder.add_argument("--root", required=True, help="folder searched recursively for audio files")
    folder.add_argument("--out", required=True, metavar="MANIFEST", help="manifest file to write (.jsonl)")
    folder.add_argument("--speaker-from", choices=["dir"],
                        help="dir: the speaker is the name of the folder holding each file (default: no speaker)")
    folder.set_defaults(func=_prepare_folder)
    table = corpora.add_parser("table", help="a CSV, TSV or JSON Lines table of audio paths and transcripts",
                               description="Write one manifest from a table with a header (CSV, TSV) or JSON "
                                           "Lines (NeMo manifests too). Columns are found by their usual names "
                                           "unless named: audio (path, audio, file, filename, audio_filepath, "
                                           "wav, ...), text (text, transcript, sentence, transcription, ...); "
                                           "speaker, id and duration columns are used when present. Rows that "
                                           "cannot be used are skipped and reported with their line numbers.")
    table.add_argument("file", metavar="FILE", help="the table (.csv, .tsv, .jsonl; other names are sniffed)")
    table.add_argument("--out", required=True, metavar="MANIFEST", help="manifest file to write (.jsonl)")
    table.add_argument("--audio-column", metavar="NAME", help="column holding the audio paths")
    table.add_argument("--text-column", metavar="NAME", help="column holding the transcripts")
    table.add_argument("--speaker-column", metavar="NAME", help="column holding speaker names (optional)")
    table.add_argument("--id-column", metavar="NAME",
                       help="column holding utterance ids (default: the audio path without its extension)")
    table.add_argument("--root", metavar="DIR",
                       help="folder that relative audio paths start from (default: the table's folder; "
                            "for Common Voice, its clips/ folder)")
    table.set_defaults(func=_prepare_table)


def _prepare_an4(args) -> int:
    from asr.corpora import scan_an4, split_by_speaker
    from asr.data import write_manifest

    halves = scan_an4(args.root)
    out = Path(args.out or args.root)
    if "train" in halves and args.dev_fraction > 0:
        # AN4 speaker ids start with the speaker's sex (f/m): hold out the same share of each.
        halves["train"], halves["dev"] = split_by_speaker(halves["train"], args.dev_fraction, args.seed,
                                                          group=lambda speaker: speaker[0])
    for half, utts in halves.items():
        write_manifest(out / f"an4-{half}.jsonl", utts)
        speakers = len({u.speaker for u in utts})
        print(f"{out / f'an4-{half}.jsonl'}: {len(utts)} utterances, {speakers} speakers, "
              f"{sum(u.duration for u in utts) / 60:.1f} min")
    return 0


def _prepare_librispeech(args) -> int:
    from asr.corpora import scan_librispeech
    from asr.data import write_manifest

    if args.download:
        from asr.download import fetch_librispeech, resource

        for path in fetch_librispeech(args.root, args.download, args.mirror, keep_archives=args.keep_archives):
            print(f"{path}: ready")
        if not any(resource(n).is_archive for n in args.download) and not any(Path(args.root).rglob("*.trans.txt")):
            return 0  # only LM files were asked for, and there is no corpus to scan yet
    out = Path(args.out or args.root)
    for subset, utts in sorted(scan_librispeech(args.root, cache_dir=out).items()):
        write_manifest(out / f"{subset}.jsonl", utts)
        print(f"{out / f'{subset}.jsonl'}: {len(utts)} utterances, {sum(u.duration for u in utts) / 3600:.2f} h")
    return 0


def _prepare_folder(args) -> int:
    from asr.corpora import scan_folder
    from asr.data import write_manifest

    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; --out names the manifest file to write, e.g. {out / 'train.jsonl'}")
    utts, skipped = scan_folder(args.root, args.speaker_from)
    write_manifest(out, utts)
    speakers = f"{len({u.speaker for u in utts})} speakers, " if args.speaker_from else ""
    n_skipped = sum(len(files) for files in skipped.values())
    print(f"{out}: {len(utts)} utterances, {speakers}{sum(u.duration for u in utts) / 60:.1f} min"
          + (f", {n_skipped} audio files skipped (see the warnings above)" if n_skipped else ""))
    return 0


def _prepare_table(args) -> int:
    from asr.corpora import read_table
    from asr.data import write_manifest

    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; --out names the manifest file to write, e.g. {out / 'train.jsonl'}")
    if out.resolve() == Path(args.file).resolve():
        raise InputError(f"{out}: is the table being read; write the manifest elsewhere with --out")
    utts, problems = read_table(args.file, args.audio_column, args.text_column, args.root,
                                speaker_column=args.speaker_column, id_column=args.id_column)
    write_manifest(out, utts)
    speakers = {u.speaker for u in utts if u.speaker is not None}
    print(f"{out}: {len(utts)} utterances, " + (f"{len(speakers)} speakers, " if speakers else "")
          + f"{sum(u.duration for u in utts) / 60:.1f} min"
          + (f", {len(problems)} rows skipped (see the warnings above)" if problems else ""))
    return 0


def _add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="check manifests and their audio before training",
                       description="Read every utterance's audio once and report, grouped by problem: "
                                   "blocking ones (unusable manifest lines, unreadable or empty audio, empty "
                                   "transcripts, transcripts CTC cannot fit into the audio) and warnings "
                                   "(characters outside the vocabulary, wrong manifest durations, duration "
                                   "outliers, speech rate, near-silence, clipping, odd sample rates or channel "
                                   "counts). Exit code 0 when nothing blocks, 1 otherwise.")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="JSONL manifest(s), checked as one data set")
    vocab = p.add_mutually_exclusive_group()
    vocab.add_argument("--tokenizer", help="vocabulary to check against: char (default) or bpe:N")
    vocab.add_argument("--model", metavar="CKPT", help="check against this checkpoint's tokenizer instead")
    p.add_argument("--workers", type=int, help="processes reading audio (default: CPU cores, at most 16)")
    p.add_argument("--clean", metavar="OUT.jsonl", help="write a manifest without the utterances that have "
                                                        "blocking problems (warnings are kept)")
    p.add_argument("--json", metavar="REPORT.json", help="write the full report as JSON")
    p.set_defaults(func=_doctor)


def _doctor(args) -> int:
    from asr.doctor import run_doctor

    return run_doctor(args.manifests, tokenizer=args.tokenizer, model=args.model, workers=args.workers,
                      clean=args.clean, json_path=args.json)


# --- train ----------------------------------------------------------------------------------------


class _TrainHelp(argparse.Action):
    """--help for `asr train`, with each option's default and the preset table.

    Both come from `TrainConfig` and the presets, which import torch, so they are filled in only
    when help is asked for; every other use of `asr` starts without torch.
    """

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from asr.model import PRESETS, count_parameters
        from asr.train import TrainConfig

        defaults = vars(TrainConfig(train=[], out=""))
        for action in parser._actions:
            if action.dest in defaults and action.nargs != 0 and defaults[action.dest] not in (None, [], ""):
                action.help = f"{action.help or ''} (default: {defaults[action.dest]})".lstrip()
        rows = [f"  {name:<6} {c.num_layers} x BiLSTM {c.hidden_size:>4}, conv {c.conv_channels} ch: "
                f"{count_parameters(c) / 1e6:6.2f}M parameters" for name, c in PRESETS.items()]
        parser.epilog = "presets (character vocabulary):\n" + "\n".join(rows)
        parser.print_help()
        parser.exit()


def _add_train(sub) -> None:
    # Options left out take TrainConfig's defaults (argparse.SUPPRESS keeps them out of the namespace).
    p = sub.add_parser("train", help="train a model on manifests", add_help=False,
                       argument_default=argparse.SUPPRESS, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train a BiLSTM-CTC model. Writes RUNDIR/last.pt (resumable), "
                                   "RUNDIR/best.pt (lowest dev WER), metrics.jsonl and train.log.")
    p.add_argument("-h", "--help", action=_TrainHelp, help="show this help (with defaults and preset sizes) and exit")
    p.add_argument("--train", nargs="+", required=True, metavar="MANIFEST", help="training manifest(s)")
    p.add_argument("--dev", metavar="MANIFEST", help="dev manifest: greedy WER after every epoch picks best.pt")
    p.add_argument("--out", required=True, metavar="RUNDIR", help="run folder for checkpoints and logs")
    p.add_argument("--preset", help="model size: tiny, small, base, large")
    p.add_argument("--tokenizer", help="char or bpe:N (N sentencepiece pieces)")
    p.add_argument("--init", metavar="CKPT",
                   help="fine-tune: start from this checkpoint's weights, tokenizer and feature statistics "
                        "(network size from it, not --preset), with a fresh optimizer and schedule")
    p.add_argument("--dropout", type=float, help="dropout between layers (default: the preset's or --init's)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup-steps", type=int, help="linear warm-up, then cosine decay")
    p.add_argument("--max-batch-seconds", type=float,
                   help="audio seconds per batch, padding included (batches are bucketed by duration)")
    p.add_argument("--grad-clip", type=float, help="maximum gradient norm")
    p.add_argument("--min-duration", type=float, help="drop shorter utterances (s)")
    p.add_argument("--max-duration", type=float, help="drop longer utterances (s)")
    p.add_argument("--no-spec-augment", dest="spec_augment", action="store_false", help="turn SpecAugment off")
    p.add_argument("--freq-masks", type=int, metavar="N", help="SpecAugment frequency masks (up to 27 bins each)")
    p.add_argument("--time-masks", type=int, metavar="N",
                   help="SpecAugment time masks (up to 5 %% of the utterance each)")
    p.add_argument("--speed-perturb", action="store_true", help="play each utterance at 0.9, 1.0 or 1.1 speed")
    p.add_argument("--noise-dir", metavar="DIR", help="mix in noise from the audio files in DIR (recursively)")
    p.add_argument("--noise-snr", type=_snr_range, metavar="LOW,HIGH", help="SNR range in dB for --noise-dir")
    p.add_argument("--shuffle-first-epoch", dest="sorted_first_epoch", action="store_false",
                   help="shuffle the first epoch too (by default it runs shortest utterances first)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: bf16 autocast on CUDA, fp32 on CPU; fp16 adds a gradient scaler; CTC stays fp32")
    p.add_argument("--accumulate", type=int, help="batches whose gradients make one optimizer step")
    p.add_argument("--save-every", type=int, metavar="STEPS",
                   help="also checkpoint every STEPS optimizer steps: RUNDIR/last.pt and RUNDIR/step-N.pt")
    p.add_argument("--keep-last", type=int, metavar="K", help="how many step-N.pt checkpoints to keep")
    p.add_argument("--keep-epochs", type=int, metavar="K",
                   help="also save RUNDIR/epoch-N.pt at every epoch's end and keep the newest K (for asr average)")
    p.add_argument("--resume", action="store_true",
                   help="continue from RUNDIR/last.pt exactly where it stopped, mid-epoch included")
    p.set_defaults(func=_train)


def _snr_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in dB, e.g. 5,20; got {text!r}") from None
    if low > high:
        raise argparse.ArgumentTypeError(f"LOW must not exceed HIGH, got {text!r}")
    return low, high


def _train(args) -> int:
    from dataclasses import fields

    from asr.train import TrainConfig, train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)})
    train(cfg)
    return 0


def _add_average(sub) -> None:
    p = sub.add_parser("average", help="average several checkpoints' weights into one",
                       usage="asr average CKPT CKPT [CKPT ...] --out OUT.pt\n"
                             "       asr average --last K --run RUNDIR --out OUT.pt",
                       description="Write one checkpoint whose weights are the element-wise mean of the inputs' "
                                   "(e.g. the last few epochs of a run). The inputs must share the model "
                                   "config, tokenizer and feature settings; optimizer state is not kept.")
    p.add_argument("checkpoints", nargs="*", metavar="CKPT", help="checkpoints to average (at least 2)")
    p.add_argument("--last", type=int, metavar="K",
                   help="with --run: average the K checkpoints with the most training steps")
    p.add_argument("--run", metavar="RUNDIR", help="with --last: the run folder's step-*.pt and epoch-*.pt files")
    p.add_argument("--out", required=True, metavar="OUT.pt", help="checkpoint file to write")
    p.set_defaults(func=_average, parser=p)


def _average(args) -> int:
    from asr.average import find_last_checkpoints, write_average

    if (args.last is None) != (args.run is None):
        args.parser.error("--last and --run go together")
    if args.last is not None:
        if args.checkpoints:
            args.parser.error("give either checkpoint files or --last K --run RUNDIR, not both")
        paths = find_last_checkpoints(args.run, args.last)
    else:
        if len(args.checkpoints) < 2:
            args.parser.error("give at least 2 checkpoints (or --last K --run RUNDIR)")
        paths = args.checkpoints
    write_average(paths, args.out)
    print(f"{args.out}: average of {len(paths)} checkpoints")
    return 0


# --- decoder options (evaluate, transcribe) -------------------------------------------------------


def _add_decoder_options(p, nbest: bool = False) -> None:
    g = p.add_argument_group("decoding", "Defaults come from the model when `asr lm tune --save` stored settings "
                                         "in it, else greedy decoding.")
    g.add_argument("--decoder", choices=["greedy", "beam"],
                   help="greedy (best path) or beam (CTC prefix beam search); beam when --lm or --lexicon is given")
    g.add_argument("--beam-size", type=int, metavar="N", help="hypotheses kept by beam search (default 50)")
    g.add_argument("--beam-threshold", type=float, metavar="F",
                   help="drop hypotheses scoring this far below the best (default 25)")
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


def _decoder_overrides(args) -> dict:
    """The decoder flags given on the command line, as `asr.decoding.decoder_from_settings` keys."""
    keys = ("decoder", "beam_size", "beam_threshold", "lm", "lexicon", "lexicon_free", "lm_weight", "word_score",
            "nbest")
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if args.hotwords:
        overrides["hotwords"] = [_hotword(h) for h in args.hotwords]
    for key in ("beam_size", "nbest"):
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


def _add_precision(group) -> None:
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default="auto",
                       help="arithmetic of the model: auto (bf16 on a CPU with native bfloat16, else fp32), fp32, "
                            "bf16, or int8 (dynamic quantisation of the LSTM and linear layers, CPU only) "
                            "(default auto)")


# --- evaluate -------------------------------------------------------------------------------------


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="WER/CER of a model on a manifest, or compare two results",
                       usage="asr evaluate --manifest MANIFEST --output DIR [options]\n"
                             "       asr evaluate --compare A B",
                       description="Decode a manifest and score it: prints WER, CER, sentence error rate, a "
                                   "bootstrap 95 % confidence interval of the WER, the worst utterances and the "
                                   "WER by speaker and duration; writes OUTPUT/summary.json and "
                                   "OUTPUT/utterances.jsonl (with word alignments). --compare A B instead tells "
                                   "whether two earlier results differ significantly (paired bootstrap).")
    p.add_argument("--manifest", help="JSONL manifest with reference transcripts")
    p.add_argument("--model", help="checkpoint (default: the bundled model)")
    _add_decoder_options(p)
    p.add_argument("--output", metavar="DIR", help="folder for summary.json and utterances.jsonl")
    p.add_argument("--device", default="cpu")
    _add_precision(p)
    p.add_argument("--worst", type=int, default=10, metavar="N",
                   help="worst utterances kept in summary.json (default 10; up to 5 are printed)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="compare two `asr evaluate` output folders on the utterances they share; decodes nothing")
    p.set_defaults(func=_evaluate, parser=p)


def _evaluate(args) -> int:
    from asr.evaluate import compare_results, comparison_lines, evaluate, report_lines
    from asr.train import load_utterances
    from asr.transcribe import Transcriber

    if args.compare:
        if args.manifest or args.output or args.model:
            args.parser.error("--compare A B compares two earlier results: it takes no --manifest, --output or --model")
        print("\n".join(comparison_lines(compare_results(*args.compare))))
        return 0
    missing = [name for name, value in (("--manifest", args.manifest), ("--output", args.output)) if not value]
    if missing:
        args.parser.error(f"the following arguments are required: {', '.join(missing)} (or --compare A B)")
    if args.worst < 0:
        args.parser.error("--worst must be 0 or more")
    utts = load_utterances([args.manifest], "evaluation")
    t = Transcriber.load(args.model, args.device, decoder=_decoder_overrides(args), precision=args.precision)
    s = evaluate(t.model, t.features, t.tokenizer, utts, args.output, args.device, decode=t.decode,
                 extra={"model": str(args.model or "bundled"), "manifest": args.manifest,
                        "decoder": t.decoder_settings, "precision": t.precision},
                 worst=args.worst)
    for problem in s["skipped"]:
        print(f"error: {problem}", file=sys.stderr)
    print(f"WER {100 * s['wer']:.2f} % ({s['substitutions']} sub, {s['deletions']} del, {s['insertions']} ins "
          f"/ {s['ref_words']} words)  CER {100 * s['cer']:.2f} %  on {s['utterances']} utterances, "
          f"{s['audio_seconds'] / 60:.1f} min, RTF {s['real_time_factor']:.3f}")
    print("\n".join(report_lines(s, worst=min(5, args.worst))))
    print(f"wrote {Path(args.output) / 'summary.json'} and {Path(args.output) / 'utterances.jsonl'}")
    return 1 if s["skipped"] else 0


# --- lm -------------------------------------------------------------------------------------------


def _add_lm(sub) -> None:
    p = sub.add_parser("lm", help="build and tune n-gram language models for beam search",
                       description="Language models for --decoder beam: build an ARPA n-gram model from text, "
                                   "then tune its weight on a dev set.")
    cmds = p.add_subparsers(dest="lm_command", required=True, metavar="COMMAND")
    b = cmds.add_parser("build", help="estimate a modified Kneser-Ney n-gram model, written as ARPA",
                        description="Estimate an interpolated modified Kneser-Ney n-gram model from text (one "
                                    "sentence per line, normalised like transcripts) and/or the transcripts of "
                                    "manifests, and write it as ARPA (gzipped when OUT ends in .gz). For corpora "
                                    "of more than ~100 M words use KenLM's lmplz.")
    b.add_argument("--text", nargs="+", default=[], metavar="FILE", help="text files, one sentence per line (.gz ok)")
    b.add_argument("--manifest", nargs="+", default=[], metavar="MANIFEST", help="take the transcripts of these")
    b.add_argument("--order", type=int, default=3, help="n-gram order, 2 or more (default 3)")
    b.add_argument("--tokens", metavar="CHECKPOINT",
                   help="model over this model's tokens instead of words, for --lexicon-free decoding")
    b.add_argument("--out", required=True, help="ARPA file to write (.arpa or .arpa.gz)")
    b.set_defaults(func=_lm_build)
    t = cmds.add_parser("tune", help="find the LM weight and word score with the lowest dev WER",
                        description="Run the model once over the manifest, then beam-search it for every pair of "
                                    "--lm-weights x --word-scores and report the WER of each. With --save, write "
                                    "a copy of the model that uses the best pair (and this LM) by default.")
    t.add_argument("--model", help="checkpoint (default: the bundled model)")
    t.add_argument("--manifest", required=True, help="dev manifest with reference transcripts")
    t.add_argument("--lm", required=True, metavar="FILE", help="KenLM model (.arpa, .arpa.gz or binary)")
    t.add_argument("--lexicon", metavar="FILE", help="lexicon (default: the LM's words spelled by the model)")
    t.add_argument("--lexicon-free", action="store_true", help="the LM is over tokens (`asr lm build --tokens`)")
    t.add_argument("--lm-weights", default="0:2:0.25", metavar="GRID",
                   help="LM weights to try: 'a,b,c' or START:STOP:STEP (default 0:2:0.25)")
    t.add_argument("--word-scores", default="-1:3:0.5", metavar="GRID",
                   help="word scores to try (default -1:3:0.5; write --word-scores=-2:2:1 when the first is negative)")
    t.add_argument("--beam-size", type=int, default=50, help="beam size while tuning and stored (default 50)")
    t.add_argument("--beam-threshold", type=float, default=25.0, help="beam threshold (default 25)")
    t.add_argument("--save", metavar="CHECKPOINT", help="write the model with the best settings here (may be --model)")
    t.add_argument("--device", default="cpu")
    _add_precision(t)
    t.set_defaults(func=_lm_tune)


def _text_lines(paths: list[str]):
    import gzip

    for path in paths:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                yield from f
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not a readable UTF-8 text file ({e})") from None


def _lm_build(args) -> int:
    from asr.lm import build_arpa

    if not args.text and not args.manifest:
        raise InputError("lm build: give --text and/or --manifest")
    if args.order < 2:
        raise InputError(f"lm build: --order {args.order}: KenLM, which beam search uses, needs 2 or more")
    lines = _text_lines(args.text)
    if args.manifest:
        from itertools import chain

        from asr.train import load_utterances

        lines = chain(lines, (u.text for u in load_utterances(args.manifest, "LM text")))
    if args.tokens:
        from asr.decoding import token_name
        from asr.model import read_checkpoint
        from asr.text import tokenizer_from_dict

        tokenizer = tokenizer_from_dict(read_checkpoint(args.tokens)["tokenizer"])
        lines = (" ".join(token_name(tokenizer.tokens[i]) for i in tokenizer.encode(line)) for line in lines)
    try:
        stats = build_arpa(lines, args.order, args.out)
    except ValueError as e:
        raise InputError(f"lm build: {e}") from None
    sizes = ", ".join(f"{n} {k + 1}-grams" for k, n in enumerate(stats.ngrams))
    print(f"wrote {args.out}: {sizes}; {stats.words} words in {stats.sentences} sentences, "
          f"vocabulary {stats.vocab_size}")
    return 0


def _lm_tune(args) -> int:
    from asr.decoding import BeamOptions, greedy_decode, resolve_file
    from asr.train import load_utterances
    from asr.transcribe import DEFAULT_MODEL, Transcriber
    from asr.tuning import best_row, compute_emissions, grid, save_settings, tune

    try:
        weights, scores = grid(args.lm_weights), grid(args.word_scores)
    except ValueError as e:
        raise InputError(f"lm tune: {e}") from None
    for path, what in ((args.lm, "lm"), (args.lexicon, "lexicon")):
        if path:
            resolve_file(path, None, what)
    utts = load_utterances([args.manifest], "tuning")
    # the stored decoder is not needed
    t = Transcriber.load(args.model, args.device, decode=greedy_decode, precision=args.precision)
    emissions, problems = compute_emissions(t.model, t.features, t.tokenizer, utts, args.device)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not emissions:
        raise InputError(f"{args.manifest}: no utterance could be read")
    base = BeamOptions(beam_size=args.beam_size, beam_threshold=args.beam_threshold, lm=args.lm,
                       lexicon=args.lexicon, lexicon_free=args.lexicon_free)
    print(f"{len(emissions)} utterances; {len(weights) * len(scores)} settings of LM weight x word score")
    print(f"{'lm_weight':>9} {'word_score':>10} {'WER %':>7} {'CER %':>7}")

    def show(row):
        print(f"{row['lm_weight']:>9g} {row['word_score']:>10g} {100 * row['wer']:>7.2f} {100 * row['cer']:>7.2f}",
              flush=True)

    rows = tune(emissions, t.tokenizer, base, weights, scores, on_result=show)
    best = best_row(rows)
    print(f"best: --lm-weight {best['lm_weight']:g} --word-score {best['word_score']:g}: "
          f"WER {100 * best['wer']:.2f} %, CER {100 * best['cer']:.2f} % on {args.manifest}")
    if args.save:
        from dataclasses import replace

        tuned = {"manifest": args.manifest, "utterances": len(emissions), "wer": best["wer"], "cer": best["cer"]}
        options = replace(base, lm_weight=best["lm_weight"], word_score=best["word_score"])
        save_settings(args.model or DEFAULT_MODEL, args.save, options, tuned)
        print(f"wrote {args.save}: transcription and evaluation with it use these settings unless told otherwise")
    return 1 if problems else 0


# --- transcribe -----------------------------------------------------------------------------------


def _add_transcribe(sub) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio files, folders, globs or standard input",
                       description="Transcribe audio files (wav, flac, ogg, sph, mp3, ...), folders (searched "
                                   "recursively), glob patterns ('talks/**/*.flac', quoted) and '-' (standard "
                                   "input). Long recordings are read in blocks and cut at pauses, so memory stays "
                                   "bounded whatever the length. Without --output-dir the text goes to standard "
                                   "output. Unreadable files are reported, skipped and listed at the end; the exit "
                                   "code is 1 if any failed.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders, glob patterns, or - for stdin")
    p.add_argument("--model", help="checkpoint (default: the bundled model)")
    _add_decoder_options(p, nbest=True)
    out = p.add_argument_group("output")
    out.add_argument("--format", default="txt",
                     help="comma-separated output formats from txt, json, srt, vtt, tsv, or 'all' (default txt)")
    out.add_argument("--output-dir", metavar="DIR",
                     help="write <name>.<format> files here, mirroring the tree of folder and glob inputs")
    out.add_argument("--skip-existing", action="store_true",
                     help="skip inputs whose every requested output file already exists (resume a batch job)")
    out.add_argument("--max-line-chars", type=int, default=42, metavar="N",
                     help="srt/vtt: characters per subtitle line (default 42)")
    out.add_argument("--max-lines", type=int, default=2, metavar="N", help="srt/vtt: lines per cue (default 2)")
    out.add_argument("--max-cue-seconds", type=float, default=7.0, metavar="S",
                     help="srt/vtt: longest cue (default 7)")
    out.add_argument("--pause-seconds", type=float, default=0.6, metavar="S",
                     help="srt/vtt: a longer pause between words starts a new cue (default 0.6)")
    run = p.add_argument_group("running")
    run.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    _add_precision(run)
    run.add_argument("--threads", type=int, metavar="N", help="CPU threads for the model (default: torch's choice)")
    run.add_argument("--batch-size", type=int, default=8, metavar="N",
                     help="segments of a recording run through the model together (default 8)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (it only shows on a terminal)")
    seg = p.add_argument_group("long recordings", "Audio is cut into segments at pauses and decoded segment by "
                                                  "segment; word times stay relative to the file's start.")
    seg.add_argument("--max-segment-seconds", type=float, default=30.0, metavar="S",
                     help="longest segment; where no pause comes, cut here with 2 s of overlap (default 30)")
    seg.add_argument("--min-segment-seconds", type=float, default=1.0, metavar="S",
                     help="no cut before a segment is this long (default 1)")
    seg.add_argument("--split-pause", type=float, default=0.5, metavar="S",
                     help="end a segment at the first pause this long (default 0.5, suiting models trained on "
                          "single utterances); 0: cut only near --max-segment-seconds, at the best pause")
    p.set_defaults(func=_transcribe)


def _parse_formats(spec: str) -> list[str]:
    from asr.outputs import FORMATS

    formats = list(FORMATS) if spec == "all" else [f.strip() for f in spec.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(f"--format: unknown format {', '.join(unknown) or spec!r}; choose from "
                         f"{', '.join(FORMATS)} or all")
    return formats


def _transcribe(args) -> int:
    import contextlib
    import tempfile
    import time

    from asr.outputs import SubtitleOptions, write_outputs
    from asr.transcribe import Transcriber, drop_output_collisions, find_audio, stdin_to_file

    formats = _parse_formats(args.format)
    subtitle = SubtitleOptions(max_line_chars=args.max_line_chars, max_lines=args.max_lines,
                               max_cue_seconds=args.max_cue_seconds, pause_seconds=args.pause_seconds)
    if args.output_dir is None and formats != ["txt"]:
        raise InputError(f"--format {args.format} writes files: add --output-dir DIR")
    if args.skip_existing and args.output_dir is None:
        raise InputError("--skip-existing needs --output-dir")
    for name in ("threads", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.min_segment_seconds <= args.max_segment_seconds:
        raise InputError("need 0 < --min-segment-seconds <= --max-segment-seconds")
    if args.split_pause and args.split_pause < 0.3:
        raise InputError("--split-pause must be 0 (off) or at least 0.3 s, the shortest pause detected")
    with contextlib.ExitStack() as stack:
        paths, stdin = list(args.paths), None
        if "-" in paths:
            stdin = stdin_to_file(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asr-"))))
            paths = [str(stdin) if p == "-" else p for p in paths]
        files, failures = find_audio(paths)
        files = [(f, Path("stdin") if f == stdin else stem) for f, stem in files]
        if args.output_dir is not None:
            files, collisions = drop_output_collisions(files)
            failures += collisions
        total = len(files) + len(failures)
        for problem in failures:
            print(f"error: {problem}", file=sys.stderr)
        if args.skip_existing:
            out = Path(args.output_dir)
            todo = [(f, stem) for f, stem in files
                    if not all((out / stem).with_name(stem.name + "." + fmt).is_file() for fmt in formats)]
            if len(todo) < len(files):
                print(f"skipping {len(files) - len(todo)} inputs whose outputs exist", file=sys.stderr)
            files = todo
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        transcriber = (Transcriber.load(args.model, args.device, decoder=_decoder_overrides(args),
                                        precision=args.precision) if files else None)
        bar = _files_progress(len(files), args.no_progress)
        audio_seconds, start = 0.0, time.perf_counter()
        for path, stem in files:
            try:
                result = transcriber.transcribe(path, batch_size=args.batch_size,
                                                max_segment_seconds=args.max_segment_seconds,
                                                min_segment_seconds=args.min_segment_seconds,
                                                split_pause_seconds=args.split_pause or None)
            except InputError as e:
                bar.write(f"error: {e}", file=sys.stderr)
                failures.append(str(e))
                bar.update()
                continue
            audio_seconds += result.duration
            rtf = (time.perf_counter() - start) / max(audio_seconds, 1e-9)
            bar.set_postfix({"audio": f"{audio_seconds / 3600:.2f} h", "RTF": f"{rtf:.3f}"}, refresh=False)
            bar.update()
            if args.output_dir is None:
                name = "-" if path == stdin else path
                bar.write(result.text if len(files) == 1 else f"{name}\t{result.text}", file=sys.stdout)
                sys.stdout.flush()
            else:
                write_outputs(result, Path(args.output_dir) / stem, formats, subtitle)
        bar.close()
    if failures:
        print(f"{len(failures)} of {total} inputs failed:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


def _files_progress(total: int, off: bool):
    """A bar over files on standard error: shown on a terminal only, never in logs or pipes."""
    from tqdm import tqdm

    return tqdm(total=total, unit="file", disable=True if off else None, dynamic_ncols=True, leave=False)
