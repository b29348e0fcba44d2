"""Combine models at the hypothesis level: pool their beam-search n-best lists and rescore every candidate
with the mean of the models' CTC log-likelihoods plus the LM, over a grid of LM weight and word score.

`asr average --ensemble` combines members frame by frame, which needs their CTC spikes on the same
frames: true of runs fine-tuned from one checkpoint, false of runs from different starts (MODEL.md,
run S). Scoring whole transcripts does not care where the spikes fall, since a transcript's CTC
log-likelihood sums over all of its alignments. This script measures whether that helps, on a dev set:

    python recipes/an4/combine_nbest.py --manifest data/an4/an4-dev.jsonl \
        models/an4/model.pt runs/an4-s2/export/model.pt

Each model searches with the beam settings stored in it (`asr lm tune --save`), keeping --nbest
candidates. It prints each model's own 1-best WER, the oracle WER of the pooled candidates (the best
any rescoring could do), and for every (LM weight, word score) the WER of rescoring with the first
model alone (a control: what rescoring does without a second opinion) and with all of them. The LM
that rescores is the first model's. The weights are chosen on the set scored, so read the best row of
a grid as optimistic, and compare it with the first model's own 1-best at its own tuned setting.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from asr.decoding import BeamOptions, beam_options, beam_search, greedy_decode
from asr.errors import InputError
from asr.lm import ArpaModel
from asr.metrics import score, word_errors
from asr.model import PRECISIONS
from asr.train import load_utterances
from asr.transcribe import Transcriber
from asr.tuning import best_row, compute_emissions, grid


@dataclass
class Candidate:
    text: str
    ctc: list[float]  # log p(text | audio) under each model, natural log
    lm: float  # log10 p(text) under the LM, as flashlight's beam search scores it
    words: int


def ctc_log_likelihood(log_probs: torch.Tensor, tokens: list[int]) -> float:
    """log p(tokens | audio) summed over every CTC alignment, from (T, V) log-probs (blank = id 0);
    -inf when the frames are too few for the tokens."""
    targets = torch.tensor([tokens], dtype=torch.long)
    loss = torch.nn.functional.ctc_loss(log_probs[:, None].float(), targets, torch.tensor([log_probs.shape[0]]),
                                        torch.tensor([len(tokens)]), reduction="sum")
    return -float(loss)


def rescore(candidates: list[list[Candidate]], weights: list[float], lm_weight: float,
            word_score: float) -> list[str]:
    """Per utterance, the text maximising sum_m weights[m] * ctc[m] + lm_weight * lm + word_score * words
    ("" for an utterance without candidates)."""
    def total(c: Candidate) -> float:
        acoustic = sum(w * s for w, s in zip(weights, c.ctc, strict=True) if w)  # 0 * -inf would be nan
        return acoustic + lm_weight * c.lm + word_score * c.words

    return [max(cands, key=total).text if cands else "" for cands in candidates]


def search_options(model_path: str, metadata: dict, nbest: int) -> BeamOptions:
    """The beam settings stored in a checkpoint, keeping `nbest` candidates."""
    stored = metadata.get("decoder") or {}
    if stored.get("decoder") != "beam" or not stored.get("lm"):
        raise InputError(f"{model_path}: no tuned beam search with an LM stored; run asr lm tune --save first")
    if stored.get("lexicon_free"):
        raise InputError(f"{model_path}: its LM is over tokens (lexicon-free); rescoring needs a word LM")
    settings = {k: v for k, v in stored.items() if k != "decoder"}
    return replace(beam_options(settings, Path(model_path).parent), nbest=nbest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="checkpoints with tuned beam settings; the first one's LM rescores")
    p.add_argument("--manifest", required=True, help="the dev set (JSON lines with transcripts)")
    p.add_argument("--nbest", type=int, default=20, help="candidates kept per model and utterance (default 20)")
    p.add_argument("--lm-weights", default="0:2:0.25", metavar="GRID", help="default 0:2:0.25")
    p.add_argument("--word-scores", default="-1:4:1", metavar="GRID", help="default -1:4:1")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="of the acoustic models (default fp32)")
    args = p.parse_args(argv)
    if args.nbest < 1:
        p.error(f"--nbest must be 1 or more, got {args.nbest}")
    try:
        weights, scores = grid(args.lm_weights), grid(args.word_scores)
    except ValueError as e:
        p.error(str(e))
    try:
        return _run(args, weights, scores)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(args, lm_weights: list[float], word_scores: list[float]) -> int:
    utts = load_utterances([args.manifest], "scoring")
    pooled: dict[str, dict[str, None]] = {u.id: {} for u in utts}  # id -> candidate texts, in order found
    emissions, tokenizer, lm_path = [], None, None
    for path in args.models:
        t = Transcriber.load(path, decode=greedy_decode, precision=args.precision)
        if tokenizer is not None and t.tokenizer.tokens != tokenizer.tokens:
            raise InputError(f"{path}: its tokens differ from {args.models[0]}'s; the models cannot be combined")
        tokenizer = t.tokenizer
        options = search_options(path, t.metadata, args.nbest)
        lm_path = lm_path or options.lm
        outputs, problems = compute_emissions(t.model, t.features, t.tokenizer, utts)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        by_id = {u.id: lp for u, lp in outputs}
        emissions.append(by_id)
        best = []
        for u in utts:
            if u.id not in by_id:
                best.append("")
                continue
            lp = by_id[u.id]
            nbest = beam_search(lp[None], torch.tensor([lp.shape[0]]), tokenizer, options)[0]
            texts = [tokenizer.decode(tokens) for tokens, _ in nbest]
            pooled[u.id].update(dict.fromkeys(texts))
            best.append(texts[0] if texts else "")
        own = score([u.text for u in utts], best)
        print(f"{path}: 1-best WER {100 * own.wer:.2f} % (CER {100 * own.cer:.2f} %) at LM weight "
              f"{options.lm_weight:g}, word score {options.word_score:g}")

    kept = [u for u in utts if all(u.id in by_id for by_id in emissions)]
    lm = ArpaModel.load(lm_path)
    candidates = [[Candidate(text, [ctc_log_likelihood(by_id[u.id], tokenizer.encode(text)) for by_id in emissions],
                             lm.sentence_logprob(text), len(text.split())) for text in pooled[u.id]]
                  for u in kept]
    refs = [u.text for u in kept]
    oracle = [min(cands, key=lambda c: word_errors(ref, c.text).errors).text if cands else ""
              for ref, cands in zip(refs, candidates, strict=True)]
    print(f"{len(kept)} utterances, {sum(map(len, candidates)) / max(len(kept), 1):.1f} candidates each; "
          f"oracle WER {100 * score(refs, oracle).wer:.2f} %")

    n = len(emissions)
    systems = {"first alone": [1.0] + [0.0] * (n - 1), "mean of all": [1.0 / n] * n}
    rows = {name: [] for name in systems}
    print(f"{'lm_weight':>9} {'word_score':>10}" + "".join(f" {name + ' WER %':>18}" for name in systems))
    for lm_weight in lm_weights:
        for word_score in word_scores:
            line = f"{lm_weight:9g} {word_score:10g}"
            for name, weights in systems.items():
                s = score(refs, rescore(candidates, weights, lm_weight, word_score))
                rows[name].append({"lm_weight": lm_weight, "word_score": word_score, "wer": s.wer, "cer": s.cer})
                line += f" {100 * s.wer:18.2f}"
            print(line)
    for name, table in rows.items():
        r = best_row(table)
        print(f"best, {name}: WER {100 * r['wer']:.2f} % (CER {100 * r['cer']:.2f} %) at LM weight "
              f"{r['lm_weight']:g}, word score {r['word_score']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
