"""Beam-search cost against the encoder, and our beam search against pyctcdecode, on the same emissions.

    python bench/bench_decoding.py [--model CKPT] [--manifest data/an4/an4-dev.jsonl]
        [--lm-text data/an4/an4-train.jsonl | --lm LM.arpa] [--lm-weight 0.5 --word-score -0.5]
        [--beam-sizes 10 50] [--beam-thresholds 25] [--threads 2] [--repeats 5]

The encoder (model forward) runs once per utterance, as `asr transcribe` runs it; every decoder then
decodes the same stored emissions. Prints, per decoder, the median over repeats of the total decoding
time (median, min-max), its ratio to the encoder time of the same run, and the WER and CER of its
transcripts.

Without --lm, a 3-gram is built from the transcripts of --lm-text (default: the AN4 training
manifest) with `asr.lm.build_arpa`. pyctcdecode runs when installed, with the same LM, beam size, LM
weight and word score (its beta); it is skipped otherwise. flashlight weighs KenLM's log10 scores,
pyctcdecode converts them to natural logs first, so its alpha is our LM weight / ln 10. pyctcdecode
0.5 pins numpy < 2: install it in a separate environment (pip install -e . pyctcdecode kenlm).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from bench_inference import spread, timed, timings  # bench/ is on the path when a script there runs

from asr.decoding import BeamOptions, beam_search, greedy_decode
from asr.lm import build_arpa
from asr.metrics import score
from asr.train import load_utterances
from asr.transcribe import Transcriber
from asr.tuning import compute_emissions

REPO = Path(__file__).resolve().parents[1]


def encoder_seconds(t: Transcriber, utts) -> float:
    """Model forward over every utterance alone (batch of one), features computed beforehand."""
    from asr.audio import load_audio

    feats = [t.features(load_audio(u.audio)).unsqueeze(0) for u in utts]
    start = time.perf_counter()
    with torch.inference_mode():
        for f in feats:
            t.model(f, torch.tensor([f.shape[1]]))
    return time.perf_counter() - start


def ours(emissions, tokenizer, options):
    texts = []
    for lp in emissions:
        nbest = beam_search(lp.unsqueeze(0), torch.tensor([lp.shape[0]]), tokenizer, options)[0]
        texts.append(tokenizer.decode(nbest[0][0]) if nbest else "")
    return texts


def greedy(emissions, tokenizer):
    return [greedy_decode(lp.unsqueeze(0), torch.tensor([lp.shape[0]]), tokenizer)[0].text for lp in emissions]


def pyctcdecode_decoder(tokenizer, lm: str, options: BeamOptions):
    try:
        from pyctcdecode import build_ctcdecoder
    except ImportError:
        return None
    labels = ["", *tokenizer.tokens[1:]]  # pyctcdecode: "" is the blank, " " the word separator
    return build_ctcdecoder(labels, kenlm_model_path=lm, alpha=options.lm_weight / math.log(10),
                            beta=options.word_score)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--manifest", default=str(REPO / "data" / "an4" / "an4-dev.jsonl"))
    p.add_argument("--lm", help="ARPA LM (default: a 3-gram built from --lm-text)")
    p.add_argument("--lm-text", default=str(REPO / "data" / "an4" / "an4-train.jsonl"))
    p.add_argument("--lm-weight", type=float, default=0.5)
    p.add_argument("--word-score", type=float, default=-0.5)
    p.add_argument("--beam-sizes", type=int, nargs="+", default=[10, 50])
    p.add_argument("--beam-thresholds", type=float, nargs="+", default=[25.0],
                   help="beam thresholds of the beam + LM rows (each with every beam size)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t = Transcriber.load(args.model, decode=greedy_decode)
    utts = load_utterances([args.manifest], "benchmark")
    stored, _ = compute_emissions(t.model, t.features, t.tokenizer, utts)
    utts, emissions = [u for u, _ in stored], [lp for _, lp in stored]
    refs = [u.text for u in utts]
    audio = sum(u.duration for u in utts)

    with tempfile.TemporaryDirectory() as d:
        lm = args.lm
        if lm is None:
            lm = str(Path(d) / "3gram.arpa")
            build_arpa((json.loads(line)["text"] for line in open(args.lm_text, encoding="utf-8")), 3, lm)
        ours(emissions[:1], t.tokenizer, BeamOptions(lm=lm))  # load the LM outside the timing
        encoder, _ = timed(lambda: encoder_seconds(t, utts), args.repeats)
        runs = {"greedy": lambda: greedy(emissions, t.tokenizer)}
        numpy_emissions = [lp.numpy() for lp in emissions]
        for size in args.beam_sizes:
            lm_options = BeamOptions(beam_size=size, lm=lm, lm_weight=args.lm_weight, word_score=args.word_score)
            runs[f"beam {size}, no LM"] = lambda size=size: ours(emissions, t.tokenizer, BeamOptions(size))
            for threshold in args.beam_thresholds:
                o = replace(lm_options, beam_threshold=threshold)
                name = f"beam {size} + LM, threshold {threshold:g} (ours)"
                runs[name] = lambda o=o: ours(emissions, t.tokenizer, o)
            pyctc = pyctcdecode_decoder(t.tokenizer, lm, lm_options)
            if pyctc is not None:
                runs[f"beam {size} + LM (pyctcdecode)"] = lambda d=pyctc, size=size: [
                    d.decode(e, beam_width=size) for e in numpy_emissions]
        print(f"{len(utts)} utterances, {audio / 60:.1f} min of audio, {args.threads} threads, "
              f"median of {args.repeats}")
        print(f"encoder (model forward): {encoder:.2f} s, RTF {encoder / audio:.4f}")
        print("| decoder | seconds | x encoder | WER % | CER % |\n|---|---|---|---|---|")
        for name, fn in runs.items():
            times, texts = timings(fn, args.repeats)
            s = score(refs, texts)
            print(f"| {name} | {spread(times, '.3f')} | {spread([x / encoder for x in times], '.3f')} "
                  f"| {100 * s.wer:.2f} | {100 * s.cer:.2f} |")
        if pyctc is None:
            print("pyctcdecode: not installed (pip install pyctcdecode kenlm), skipped")


if __name__ == "__main__":
    main()
