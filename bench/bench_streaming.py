"""What streaming costs: WER of streamed finals against offline transcription, at several look-aheads.

    python bench/bench_streaming.py --manifest DEV.jsonl [--manifest ...] [--model english]
        [--lookahead 0.64 1.28] [--chunk 0.32] [--threads 1] [--limit N]

For every utterance of each manifest: the offline transcript (`Transcriber.transcribe` on the whole
utterance, what `asr transcribe` gives) and the streamed one (`asr.streaming.Stream` fed 0.1-s pieces as a
live client would, its finals joined), both scored against the reference. Also the compute the stream
spends: its real-time factor on --threads threads, and the median and 95th percentile of the time one
`accept` call takes (the delay a partial adds to the audio's own latency).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def stream_text(transcriber, audio: np.ndarray, config, piece: int = 1600) -> tuple[str, list[float]]:
    """The finals of a stream fed `audio` in pieces of `piece` samples, joined -> (text, seconds of each call)."""
    from asr.streaming import Stream

    stream = Stream(transcriber, config)
    finals, calls = [], []
    for start in range(0, len(audio), piece):
        t0 = time.perf_counter()
        events = stream.accept(audio[start: start + piece])
        calls.append(time.perf_counter() - t0)
        finals += [e["text"] for e in events if e["type"] == "final"]
    finals += [e["text"] for e in stream.finish() if e["type"] == "final"]
    return " ".join(t for t in finals if t), calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", action="append", required=True, help="a dev manifest (repeatable)")
    p.add_argument("--model", default="english")
    p.add_argument("--lookahead", type=float, nargs="+", default=[0.64, 1.28])
    p.add_argument("--chunk", type=float, default=0.32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, help="the first N utterances of each manifest")
    args = p.parse_args()

    import torch

    from asr.audio import load_audio
    from asr.data import read_manifest
    from asr.metrics import score
    from asr.streaming import StreamConfig
    from asr.transcribe import Transcriber

    torch.set_num_threads(args.threads)
    transcriber = Transcriber.load(args.model)
    print(f"model {args.model}, decoder {transcriber.decoder_settings.get('decoder')}, chunk {args.chunk} s, "
          f"{args.threads} thread(s)\n")
    print("| dev set | utterances | offline WER | look-ahead | streamed WER | relative cost | stream RTF | "
          "accept() median / p95 ms |\n|---|---|---|---|---|---|---|---|")
    for manifest in args.manifest:
        utts, _ = read_manifest(manifest)
        utts = utts[: args.limit] if args.limit else utts
        audios = [load_audio(u.audio) for u in utts]
        refs = [u.text for u in utts]
        offline = score(refs, [transcriber.transcribe(a, 16000).text for a in audios]).wer
        seconds = sum(len(a) for a in audios) / 16000
        for lookahead, second_pass in [(la, False) for la in args.lookahead] + [(args.lookahead[0], True)]:
            config = StreamConfig(chunk_seconds=args.chunk, lookahead_seconds=lookahead, second_pass=second_pass)
            start, texts, calls = time.perf_counter(), [], []
            for audio in audios:
                text, times = stream_text(transcriber, audio, config)
                texts.append(text)
                calls += times
            rtf = (time.perf_counter() - start) / seconds
            mode = "second pass" if second_pass else f"{lookahead:g} s"
            wer = score(refs, texts).wer
            p95 = np.percentile(calls, 95) * 1000
            print(f"| {manifest.split('/')[-1]} | {len(utts)} | {offline:.2%} | {mode} | {wer:.2%} | "
                  f"{(wer - offline) / offline:+.1%} | {rtf:.3f} | {statistics.median(calls) * 1000:.1f} / "
                  f"{p95:.0f} |", flush=True)


if __name__ == "__main__":
    main()
