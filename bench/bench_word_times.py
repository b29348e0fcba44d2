"""Word-time accuracy: our word start and end times against an independent forced alignment.

    pip install pocketsphinx    # bench only, not a dependency of the package (its wheel ships the en-us model)
    asr prepare an4 --root ../shared/data/an4 --out data/word-times/an4 --dev-fraction 0.1
    python bench/bench_word_times.py --manifest data/word-times/an4/an4-dev.jsonl --model models/an4/model.pt
        [--decoder greedy|beam] [--unfitted] [--threads 1] [--json out.json]

The reference is pocketsphinx (CMU Sphinx, an HMM-GMM recogniser with nothing in common with our CTC
model) aligning each utterance's reference transcript with its bundled en-us acoustic model and CMU
dictionary. Our words come from `Transcriber.transcribe(path)`, the path `asr transcribe` takes
(segmentation at pauses included). The two word sequences are aligned (jiwer, as WER is), and for
each word both agree on, start and end are compared. Printed: the number of such words, the median
and 90th percentile of the absolute start and end errors (ms), and the mean signed error (ours minus
the reference: positive is late), for all words and for each utterance's first and last word.
Utterances with a reference word outside pocketsphinx's dictionary are skipped and counted.

`--unfitted` measures the word times as the CTC path gives them, before `asr.alignment.fit_to_speech`
moves them onto the sound (the "before" of BENCHMARKS.md, "Word times"). pocketsphinx often ends an
utterance's last word at the end of the recording, trailing noise included; how often is printed, as
it explains much of the error of last words' ends.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from asr.audio import load_audio
from asr.data import read_manifest
from asr.metrics import align_words
from asr.text import normalize_text
from asr.transcribe import Transcriber

FRAME_SECONDS = 0.01  # pocketsphinx's frame rate


def reference_words(decoder, wave: np.ndarray, text: str) -> list[tuple[str, float, float]] | None:
    """pocketsphinx's forced alignment of `text` to `wave` (16 kHz mono) -> [(word, start, end)], or None
    when it cannot align it (a word outside its dictionary, no path through the audio)."""
    pcm = (np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    try:
        decoder.set_align_text(text)
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
    except RuntimeError:
        return None
    words = [(s.word.split("(")[0], s.start_frame * FRAME_SECONDS, (s.end_frame + 1) * FRAME_SECONDS)
             for s in decoder.seg() if s.word not in ("<s>", "</s>", "<sil>", "(NULL)") and not s.word.startswith("[")]
    return words if [w for w, _, _ in words] == text.split() else None


def matched_pairs(ref: list[tuple[str, float, float]], hyp_words) -> list[tuple[int, tuple, object]]:
    """(index in ref, reference word, our word) for every word the two transcripts agree on."""
    _, chunks = align_words(" ".join(w for w, _, _ in ref), " ".join(w.word for w in hyp_words))
    pairs, r, h = [], 0, 0
    for c in chunks:
        if c["op"] == "equal":
            pairs += [(r + k, ref[r + k], hyp_words[h + k]) for k in range(len(c["ref"]))]
        r, h = r + len(c["ref"]), h + len(c["hyp"])
    return pairs


def summary(starts: list[float], ends: list[float]) -> dict:
    s, e = np.array(starts) * 1000, np.array(ends) * 1000
    if not len(s):
        return {"words": 0}
    return {"words": len(s),
            "start_median_ms": round(float(np.median(abs(s)))), "start_p90_ms": round(float(np.percentile(abs(s), 90))),
            "start_bias_ms": round(float(s.mean())),
            "end_median_ms": round(float(np.median(abs(e)))), "end_p90_ms": round(float(np.percentile(abs(e), 90))),
            "end_bias_ms": round(float(e.mean()))}


def measure(transcriber: Transcriber, manifests: list[str]) -> dict:
    import pocketsphinx

    decoder = pocketsphinx.Decoder(samprate=16000, loglevel="FATAL")
    diffs = {"all": ([], []), "first": ([], []), "last": ([], [])}
    skipped, utterances, run_to_end = [], 0, 0
    for manifest in manifests:
        utts, _ = read_manifest(manifest)
        for u in utts:
            text = normalize_text(u.text)
            wave = load_audio(u.audio)
            ref = reference_words(decoder, wave, text)
            if ref is None:
                skipped.append(u.id)
                continue
            utterances += 1
            run_to_end += abs(ref[-1][2] - len(wave) / 16000) <= 2 * FRAME_SECONDS
            for i, (_, start, end), ours in matched_pairs(ref, transcriber.transcribe(u.audio).words):
                for key in ["all"] + (["first"] if i == 0 else []) + (["last"] if i == len(ref) - 1 else []):
                    diffs[key][0].append(ours.start - start)
                    diffs[key][1].append(ours.end - end)
    return {"utterances": utterances, "skipped": skipped, "reference_last_word_runs_to_the_end": run_to_end,
            **{k: summary(*v) for k, v in diffs.items()}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", nargs="+", required=True, help="JSONL manifests with reference transcripts")
    p.add_argument("--model", help="checkpoint (default: the bundled model)")
    p.add_argument("--decoder", choices=["greedy", "beam"], help="default: the model's own setting")
    p.add_argument("--unfitted", action="store_true", help="word times straight from the CTC path (the 'before')")
    p.add_argument("--threads", type=int, default=1, help="torch threads (accuracy does not depend on them)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.unfitted:
        import asr.transcribe

        asr.transcribe.fit_to_speech = lambda words, *rest: words
    transcriber = Transcriber.load(args.model, decoder={"decoder": args.decoder} if args.decoder else None)
    result = measure(transcriber, args.manifest)
    print(f"{result['utterances']} utterances aligned, {len(result['skipped'])} skipped (outside the dictionary); "
          f"in {result['reference_last_word_runs_to_the_end']}, the reference's last word runs to the end of the audio")
    print(f"{'words':>6} {'n':>5} {'start med':>10} {'start p90':>10} {'start bias':>11} "
          f"{'end med':>8} {'end p90':>8} {'end bias':>9}   (ms)")
    for key in ("all", "first", "last"):
        r = result[key]
        if r["words"]:
            print(f"{key:>6} {r['words']:>5} {r['start_median_ms']:>10} {r['start_p90_ms']:>10} "
                  f"{r['start_bias_ms']:>11} {r['end_median_ms']:>8} {r['end_p90_ms']:>8} {r['end_bias_ms']:>9}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
