"""`asr evaluate`: WER/CER of a model on a manifest, or the comparison of two results."""

from __future__ import annotations

import sys
from pathlib import Path

from asr.cli import options
from asr.errors import InputError


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="WER/CER of a model on a manifest, or compare two results",
                       usage="asr evaluate --manifest MANIFEST --output DIR [options]\n"
                             "       asr evaluate --compare A B",
                       description="Decode a manifest and score it: prints WER, CER, sentence error rate, a "
                                   "bootstrap 95 % confidence interval of the WER, the worst utterances and the "
                                   "WER by speaker and duration; writes OUTPUT/summary.json and "
                                   "OUTPUT/utterances.jsonl (with word alignments). --compare A B instead tells "
                                   "whether two earlier results differ significantly (paired bootstrap).")
    p.add_argument("--manifest", help="JSONL manifest with reference transcripts")
    p.add_argument("--model", help="bundled model name (asr models lists them: english, an4), checkpoint, or "
                   "folder with model.pt (default: english)")
    options.add_decoder_options(p)
    p.add_argument("--output", metavar="DIR", help="folder for summary.json and utterances.jsonl")
    p.add_argument("--worst", type=int, default=10, metavar="N",
                   help="worst utterances kept in summary.json (default 10; up to 5 are printed, their reference "
                        "and hypothesis normalised alike, as WER compares them)")
    options.add_running(p.add_argument_group("running"))
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="compare two `asr evaluate` output folders on the utterances they share; decodes nothing")
    p.set_defaults(func=_evaluate, parser=p)


def _evaluate(args) -> int:
    from asr.evaluate import compare_results, comparison_lines, count_noun, evaluate, report_lines
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
    options.set_up_running(args)
    utts = load_utterances([args.manifest], "evaluation")
    from asr.catalog import DEFAULT

    t = Transcriber.load(args.model, args.device, decoder=options.decoder_overrides(args), precision=args.precision)
    s = evaluate(t.model, t.features, t.tokenizer, utts, args.output, args.device, decode=t.decode,
                 extra={"model": str(args.model or DEFAULT), "manifest": args.manifest,
                        "decoder": t.decoder_settings, "precision": t.precision},
                 worst=args.worst)
    for problem in s["skipped"]:
        print(f"error: {problem}", file=sys.stderr)
    if not s["utterances"]:  # a WER of 0 over nothing would read as a perfect score
        raise InputError(f"{args.manifest}: none of its {count_noun(len(utts), 'utterance')} could be read, so "
                         "nothing was scored")
    print(f"WER {100 * s['wer']:.2f} % ({s['substitutions']} sub, {s['deletions']} del, {s['insertions']} ins "
          f"/ {count_noun(s['ref_words'], 'word')})  CER {100 * s['cer']:.2f} %  on "
          f"{count_noun(s['utterances'], 'utterance')}, {s['audio_seconds'] / 60:.1f} min, "
          f"RTF {s['real_time_factor']:.3f}")
    print("\n".join(report_lines(s, worst=min(5, args.worst))))
    print(f"wrote {Path(args.output) / 'summary.json'} and {Path(args.output) / 'utterances.jsonl'}")
    return 1 if s["skipped"] else 0
