"""`asr calibrate`: fit word confidences to how often words are right on a dev set, and store the fit."""

from __future__ import annotations

import json


def add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="calibrate word confidences on a dev set",
                       description="Decode a dev manifest with the model's default decoder, fit Platt scaling of "
                                   "word confidences to whether each word is right, and report the expected "
                                   "calibration error (ECE, 10 bins) before and after. With --save, store the fit "
                                   "in a copy of the model: its transcripts then carry calibrated confidences, "
                                   "give no words for audio judged not to be speech, and are marked when "
                                   "probably wrong (asr/confidence.py).")
    p.add_argument("--model", help="bundled model name, checkpoint, or folder with model.pt (default: english)")
    p.add_argument("--manifest", required=True, help="dev manifest with reference transcripts")
    p.add_argument("--save", metavar="CHECKPOINT", help="write the model with the calibration here (may be --model)")
    p.add_argument("--json", metavar="REPORT.json", help="also write the report as JSON")
    p.set_defaults(func=_calibrate)


def _calibrate(args) -> int:
    import sys

    from asr.atomic import atomic_write_text
    from asr.catalog import resolve
    from asr.confidence import fit, word_outcomes
    from asr.errors import InputError
    from asr.evaluate import decode_utterances
    from asr.model import atomic_torch_save, read_checkpoint
    from asr.train import load_utterances
    from asr.transcribe import Transcriber

    path = resolve(args.model)
    t = Transcriber.load(path)
    utts = load_utterances([args.manifest], "calibration")
    per_utterance = []
    for d in decode_utterances(t.model, t.features, t.tokenizer, utts, decode=t.decode):
        if d.hypothesis is None:
            print(f"error: {d.error}", file=sys.stderr)
            continue
        words = [w.word for w in d.hypothesis.words]
        outcomes = word_outcomes(d.utterance.text, words)
        if outcomes is not None:
            per_utterance.append(([w.confidence for w in d.hypothesis.words], outcomes, d.utterance.duration))
    try:
        calibration, report = fit(per_utterance)
    except ValueError as e:
        raise InputError(f"{args.manifest}: {e}") from None
    report = {"manifest": args.manifest, "decoder": t.decoder_settings.get("decoder"), **report}
    print(f"{report['words']} words in {report['utterances']} utterances, {100 * report['accuracy']:.1f} % right; "
          f"ECE {report['ece_before']:.3f} raw, {report['ece_after']:.3f} calibrated "
          f"(a {calibration.a:.3f}, b {calibration.b:.3f}); a stretch of audio with fewer than "
          f"{calibration.reject_rate_below:.3f} words expected right per second gives no words, a transcript whose "
          f"mean confidence is below {calibration.warn_below:.2f} is marked probably wrong")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.save:
        state = read_checkpoint(path)
        state.setdefault("metadata", {})["confidence"] = report
        atomic_torch_save(state, args.save)
        print(f"wrote {args.save}")
    return 0
