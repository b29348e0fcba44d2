"""`asr lm build` and `asr lm tune`: n-gram language models for beam search."""

from __future__ import annotations

import sys
from itertools import chain

from asr.cli import options
from asr.errors import InputError

# The highest order the KenLM inside flashlight-text's wheels loads (its compile-time KENLM_MAX_ORDER).
MAX_ORDER = 6


def add_lm(sub) -> None:
    p = sub.add_parser("lm", help="build and tune n-gram language models for beam search",
                       description="Language models for --decoder beam: build an ARPA n-gram model from text, "
                                   "then tune its weight on a dev set.")
    cmds = p.add_subparsers(dest="lm_command", required=True, metavar="COMMAND")
    b = cmds.add_parser("build", help="estimate a modified Kneser-Ney n-gram model, written as ARPA",
                        description="Estimate an interpolated modified Kneser-Ney n-gram model from text (one "
                                    "sentence per line, normalised like transcripts) and/or the transcripts of "
                                    "manifests, and write it as ARPA (gzipped when OUT ends in .gz). For corpora "
                                    "of more than ~100 M words use KenLM's lmplz.")
    # "extend": --text a --text b adds both, as --text a b does
    b.add_argument("--text", nargs="+", action="extend", default=[], metavar="FILE",
                   help="text files, one sentence per line (.gz ok)")
    b.add_argument("--manifest", nargs="+", action="extend", default=[], metavar="MANIFEST",
                   help="take the transcripts of these")
    b.add_argument("--spell", nargs="+", action="extend", default=[], metavar="FILE",
                   help="word lists, one word or name per line (.gz ok), added as a speaker spells them: each "
                        "line's letters as one-letter words ('Swissvale' -> 's w i s s v a l e'); for speech that "
                        "spells names, as AN4's does (use --order 5 or 6 to let the LM see whole names)")
    b.add_argument("--order", type=int, default=3, help=f"n-gram order, 2 to {MAX_ORDER} (default 3)")
    b.add_argument("--min-count", type=int, default=1, metavar="N",
                   help="prune: drop n-grams of order 2 and up seen fewer than N times (Kneser-Ney's adjusted "
                        "counts; default 1, keep all); their probability mass goes to the backoff")
    b.add_argument("--vocab-size", type=int, metavar="V",
                   help="keep only the V most frequent words; the rest become <unk> (default: every word)")
    b.add_argument("--tokens", metavar="CHECKPOINT",
                   help="model over this model's tokens instead of words, for --lexicon-free decoding")
    b.add_argument("--out", required=True, help="ARPA file to write (.arpa or .arpa.gz)")
    b.set_defaults(func=_lm_build)
    x = cmds.add_parser("lexicon", help="write the LM's words spelled with a model's tokens, for fast start-up",
                        description="Write a lexicon file (one 'word token token ...' line per word) of the ARPA LM's "
                                    "words spelled with the model's tokens. Beam search otherwise spells every LM "
                                    "word at start-up, which takes seconds for a vocabulary of 100,000 words; give "
                                    "the file to lm tune --lexicon (or --lexicon at transcription) instead.")
    x.add_argument("--model", help="bundled model name, checkpoint, or folder with model.pt (default: english)")
    x.add_argument("--lm", required=True, metavar="FILE", help="ARPA language model (.arpa or .arpa.gz)")
    x.add_argument("--out", required=True, metavar="FILE", help="lexicon file to write")
    x.set_defaults(func=_lm_lexicon)
    t = cmds.add_parser("tune", help="find the LM weight and word score with the lowest dev WER",
                        description="Run the model once over the manifest, then beam-search it for every pair of "
                                    "--lm-weights x --word-scores and report the WER of each. With --save, write "
                                    "a copy of the model that uses the best pair (and this LM) by default.")
    t.add_argument("--model", help="bundled model name (asr models), checkpoint, or folder with model.pt "
                                   "(default: english)")
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
    t.add_argument("--beam-size-token", type=int, metavar="N",
                   help="tokens tried at each frame while tuning and stored (default: all)")
    t.add_argument("--save", metavar="CHECKPOINT", help="write the model with the best settings here (may be --model)")
    options.add_running(t.add_argument_group("running"))
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

    if not args.text and not args.manifest and not args.spell:
        raise InputError("lm build: give --text, --manifest and/or --spell")
    if not 2 <= args.order <= MAX_ORDER:
        raise InputError(f"lm build: --order {args.order}: KenLM, which beam search uses, loads orders 2 to "
                         f"{MAX_ORDER}")
    lines = _text_lines(args.text)
    if args.spell:
        from asr.text import spell_out

        lines = chain(lines, (spell_out(line) for line in _text_lines(args.spell)))
    if args.manifest:
        from asr.train import load_utterances

        lines = chain(lines, (u.text for u in load_utterances(args.manifest, "LM text")))
    if args.tokens:
        from asr.decoding import token_name
        from asr.model import read_checkpoint
        from asr.text import tokenizer_from_dict

        tokenizer = tokenizer_from_dict(read_checkpoint(args.tokens)["tokenizer"])
        lines = (" ".join(token_name(tokenizer.tokens[i]) for i in tokenizer.encode(line)) for line in lines)
    try:
        stats = build_arpa(lines, args.order, args.out, min_count=args.min_count, vocab_size=args.vocab_size)
    except ValueError as e:
        raise InputError(f"lm build: {e}") from None
    sizes = ", ".join(f"{n} {k + 1}-grams" for k, n in enumerate(stats.ngrams))
    print(f"wrote {args.out}: {sizes}; {stats.words} words in {stats.sentences} sentences, "
          f"vocabulary {stats.vocab_size}")
    return 0


def _lm_lexicon(args) -> int:
    from asr.atomic import atomic_write_text
    from asr.catalog import resolve
    from asr.decoding import lexicon_from_words, resolve_file
    from asr.lm import is_arpa, read_arpa_vocab
    from asr.model import read_checkpoint
    from asr.text import tokenizer_from_dict

    lm = resolve_file(args.lm, None, "lm")
    if not is_arpa(lm):
        raise InputError(f"{lm}: not an ARPA file; a binary KenLM model does not list its words")
    tokenizer = tokenizer_from_dict(read_checkpoint(resolve(args.model))["tokenizer"])
    words = read_arpa_vocab(lm)
    entries, unspellable = lexicon_from_words(words, tokenizer)
    atomic_write_text(args.out, "".join(f"{word} {' '.join(spelling)}\n" for word, spelling in entries))
    print(f"wrote {args.out}: {len(entries)} words" + (f"; {len(unspellable)} LM words cannot be spelled with the "
                                                       f"model's tokens and are left out" if unspellable else ""))
    return 0


def _lm_tune(args) -> int:
    from asr.catalog import resolve
    from asr.decoding import BeamOptions, greedy_decode, resolve_file
    from asr.train import load_utterances
    from asr.transcribe import Transcriber
    from asr.tuning import best_row, compute_emissions, grid, save_settings, tune

    try:
        weights, scores = grid(args.lm_weights), grid(args.word_scores)
    except ValueError as e:
        raise InputError(f"lm tune: {e}") from None
    if args.beam_size_token is not None and args.beam_size_token < 1:  # before the model runs over the manifest
        raise InputError("--beam-size-token must be at least 1")
    for path, what in ((args.lm, "lm"), (args.lexicon, "lexicon")):
        if path:
            resolve_file(path, None, what)
    options.set_up_running(args)
    utts = load_utterances([args.manifest], "tuning")
    # the stored decoder is not needed
    t = Transcriber.load(args.model, args.device, decode=greedy_decode, precision=args.precision)
    emissions, problems = compute_emissions(t.model, t.features, t.tokenizer, utts, args.device)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not emissions:
        raise InputError(f"{args.manifest}: no utterance could be read")
    base = BeamOptions(beam_size=args.beam_size, beam_threshold=args.beam_threshold, lm=args.lm,
                       lexicon=args.lexicon, lexicon_free=args.lexicon_free, beam_size_token=args.beam_size_token)
    n = len(weights) * len(scores)
    print(f"{len(emissions)} utterance{'' if len(emissions) == 1 else 's'}; {n} setting{'' if n == 1 else 's'} "
          "of LM weight x word score")
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
        best_options = replace(base, lm_weight=best["lm_weight"], word_score=best["word_score"])
        save_settings(resolve(args.model), args.save, best_options, tuned)
        print(f"wrote {args.save}: transcription and evaluation with it use these settings unless told otherwise")
    return 1 if problems else 0
