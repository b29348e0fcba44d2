"""Decode a manifest's audio once into 16 kHz 16-bit WAV files and write a manifest that points at them.

The English corpora here are Ogg Opus, which decodes at about 500x real time per core: a training epoch
of 8 hours would spend a minute of one of the two cores decoding, every epoch. WAV reads at memory speed,
so the recipe decodes once (about a minute for all of it) and trains from the copies.

    python recipes/english/cache_audio.py data/english/train-clean-5.jsonl --out-dir data/english/wav
        -> data/english/wav/train-clean-5.jsonl and data/english/wav/<id>.wav
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

from asr.atomic import atomic_open
from asr.audio import SAMPLE_RATE, load_audio
from asr.data import read_manifest, write_manifest
from asr.errors import InputError


def _cache_one(job: tuple[str, str]) -> str | None:
    """Decode `src` into `dst` unless `dst` is newer; -> an error line, or None."""
    src, dst = job
    target = Path(dst)
    if target.is_file() and target.stat().st_mtime >= Path(src).stat().st_mtime:
        return None
    try:
        audio = load_audio(src, SAMPLE_RATE)
    except InputError as e:
        return str(e)
    with atomic_open(target) as f:
        soundfile.write(f, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifests", nargs="+", type=Path)
    p.add_argument("--out-dir", required=True, type=Path, help="folder for the WAV files and the new manifests")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    for manifest in args.manifests:
        utts, problems = read_manifest(manifest)
        for line in problems:
            print(f"warning: {line}", file=sys.stderr)
        # Ids may hold '/' (asr prepare folder): flatten them into one file name each.
        wavs = [args.out_dir / "wav" / (u.id.replace("/", "__") + ".wav") for u in utts]
        with ProcessPoolExecutor(args.workers) as pool:
            errors = [e for e in pool.map(_cache_one, [(u.audio, str(w)) for u, w in zip(utts, wavs, strict=True)],
                                          chunksize=16) if e]
        for e in errors:
            print(f"skipped: {e}", file=sys.stderr)
        failed = {e.split(":")[0] for e in errors}
        kept = [dataclasses.replace(u, audio=str(w.resolve())) for u, w in zip(utts, wavs, strict=True)
                if u.audio not in failed]
        write_manifest(args.out_dir / manifest.name, kept)
        print(f"{args.out_dir / manifest.name}: {len(kept)} utterances cached" +
              (f", {len(errors)} could not be read" if errors else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
