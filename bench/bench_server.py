"""Load test of `asr serve` on 127.0.0.1: how many live streams it holds at real time, beside file uploads.

    python bench/bench_server.py [--model english] [--streams 1 2 4 8 12 16] [--seconds 20] [--chunk 0.32]
        [--audio FILE ...] [--port 8765]

Starts `asr serve` in a subprocess, then:
1. Uploads alone: one client posting the recordings back to back (`openai` package, response_format json)
   for --seconds; the throughput in audio-seconds per second of wall time.
2. For each N of --streams: N WebSocket clients each sending 16-bit PCM in 0.1-s pieces at real-time pace
   (a piece every 0.1 s of wall time, the recordings one after another with 1 s of silence between) for
   --seconds, while one upload client runs as in 1. The latency of an event is the time from when the
   oldest audio of its step was sent (its `until` less one chunk) to when the event arrived: what a user
   waits, from speaking to seeing the words, including the wait for a chunk to fill. A stream count is
   held at real time when the 95th percentile of partial latencies is at most chunk + 300 ms. Stops after
   the first N that is not held.

The recordings default to the repository's examples (an English dev utterance and AN4 ones), all real.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PIECE_SECONDS = 0.1


def start_server(args) -> subprocess.Popen:
    command = [sys.executable, "-m", "asr", "serve", "--model", args.model, "--port", str(args.port),
               "--max-streams", str(max(args.streams) + 1), "--max-requests", "4",
               "--chunk-seconds", str(args.chunk)]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/health", timeout=1):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"asr serve exited: {server.stderr.read()[-2000:]}") from None
            time.sleep(0.5)
    server.kill()
    raise SystemExit("asr serve did not answer /health within 120 s")


def uploads(args, stop: threading.Event, done: list[float]) -> None:
    """Post the recordings back to back until `stop`; the audio seconds of each finished upload go to `done`."""
    import soundfile
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="unused", max_retries=0)
    i = 0
    while not stop.is_set():
        path = args.audio[i % len(args.audio)]
        with open(path, "rb") as f:
            client.audio.transcriptions.create(model="asr", file=f, response_format="json")
        done.append(soundfile.info(path).duration)
        i += 1


async def one_stream(args, pcm: np.ndarray, latencies: list[float]) -> None:
    """Send `pcm` (int16) at real-time pace; the latency of every partial received goes to `latencies`."""
    import websockets

    piece = round(PIECE_SECONDS * 16000)
    sent_at: list[float] = []  # wall time at which piece i was sent
    url = f"ws://127.0.0.1:{args.port}/v1/stream?sample_rate=16000&format=s16le"
    async with websockets.connect(url, max_size=None) as ws:
        async def receive():
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "partial":
                    oldest = max(0.0, event["until"] - args.chunk)
                    i = min(int(round(oldest / PIECE_SECONDS)), len(sent_at) - 1)
                    latencies.append(time.perf_counter() - sent_at[i])
                elif event["type"] in ("done", "error"):
                    return
        receiver = asyncio.create_task(receive())
        start = time.perf_counter()
        for i in range(0, len(pcm), piece):
            await asyncio.sleep(max(0.0, start + len(sent_at) * PIECE_SECONDS - time.perf_counter()))
            sent_at.append(time.perf_counter())
            await ws.send(pcm[i: i + piece].tobytes())
        await ws.send(json.dumps({"type": "end"}))
        await asyncio.wait_for(receiver, timeout=60)


def stream_audio(args) -> np.ndarray:
    """--seconds of the recordings one after another, 1 s of silence between, as int16."""
    from asr.audio import load_audio

    parts, total, i = [], 0, 0
    while total < args.seconds * 16000:
        wave = np.concatenate([load_audio(args.audio[i % len(args.audio)]), np.zeros(16000, np.float32)])
        parts.append(wave)
        total += len(wave)
        i += 1
    audio = np.concatenate(parts)[: int(args.seconds * 16000)]
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16)


def run_streams(args, n: int, pcm: np.ndarray) -> tuple[list[float], float]:
    """N streams (staggered by a fraction of a piece) beside one upload client -> (latencies, upload audio-s/s)."""
    latencies: list[float] = []
    stop, done = threading.Event(), []
    uploader = threading.Thread(target=uploads, args=(args, stop, done), daemon=True)
    start = time.perf_counter()
    uploader.start()

    async def all_streams():
        async def staggered(k):
            await asyncio.sleep(k * PIECE_SECONDS / n)
            await one_stream(args, pcm, latencies)
        await asyncio.gather(*(staggered(k) for k in range(n)))

    asyncio.run(all_streams())
    stop.set()
    uploader.join()
    return latencies, sum(done) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="english")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16])
    p.add_argument("--seconds", type=float, default=20.0, help="audio per stream, and the upload-only phase")
    p.add_argument("--chunk", type=float, default=0.32)
    p.add_argument("--audio", nargs="+", help="recordings (default: examples/*.wav)")
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()
    args.audio = args.audio or sorted(str(f) for f in (REPO / "examples").glob("*.wav"))
    bound = args.chunk + 0.3

    server = start_server(args)
    try:
        stop, done = threading.Event(), []
        uploader = threading.Thread(target=uploads, args=(args, stop, done), daemon=True)
        start = time.perf_counter()
        uploader.start()
        time.sleep(args.seconds)
        stop.set()
        uploader.join()
        wall = time.perf_counter() - start
        print(f"model {args.model}, chunk {args.chunk} s; uploads alone: {sum(done) / wall:.1f} audio-s/s "
              f"({len(done)} files in {wall:.1f} s)\n")
        print(f"| streams | partials | latency median | p95 | held (p95 <= {bound:.2f} s) | uploads beside them |")
        print("|---|---|---|---|---|---|")
        pcm = stream_audio(args)
        for n in args.streams:
            latencies, upload_rate = run_streams(args, n, pcm)
            p95 = float(np.percentile(latencies, 95)) if latencies else float("inf")
            held = p95 <= bound
            print(f"| {n} | {len(latencies)} | {statistics.median(latencies):.3f} s | {p95:.3f} s | "
                  f"{'yes' if held else 'no'} | {upload_rate:.1f} audio-s/s |", flush=True)
            if not held:
                break
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
