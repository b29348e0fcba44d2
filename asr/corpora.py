"""Corpus scanners: an official corpus layout on disk -> manifests of Utterances.

Durations come from file headers (no decoding), read in parallel threads since the work is I/O.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asr.audio import audio_duration
from asr.data import Utterance
from asr.errors import InputError

log = logging.getLogger(__name__)

# "<s> ENTER FOUR FIVE </s> (an258-fash-b)" in the training half, "GO (an409-fcaw-b)" in the test half.
_AN4_LINE = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()\s]+)\)\s*$")


def _durations(paths: list[Path]) -> list[float | None]:
    def one(p: Path) -> float | None:
        try:
            return audio_duration(p)
        except InputError as e:
            log.warning("skipping %s", e)
            return None

    def chunk(ps: list[Path]) -> list[float | None]:
        return [one(p) for p in ps]

    # Header reads are I/O on a cold disk, so threads overlap them; chunks of files per task keep
    # the pool's per-task overhead from dominating when the headers are already in the page cache.
    size = 256
    with ThreadPoolExecutor(max_workers=8) as pool:
        chunks = pool.map(chunk, [paths[i : i + size] for i in range(0, len(paths), size)])
        return [d for c in chunks for d in c]


def _with_durations(candidates: list[tuple[str, Path, str, str]]) -> list[Utterance]:
    durations = _durations([path for _, path, _, _ in candidates])
    return [Utterance(uid, str(path), d, text, speaker)
            for (uid, path, text, speaker), d in zip(candidates, durations, strict=True)
            if d is not None and d > 0]


def scan_an4(root: str | Path) -> dict[str, list[Utterance]]:
    """The official AN4 layout (`etc/an4_{train,test}.transcription`, `wav/an4{,test}_clstk/<spk>/*.sph`).

    -> {"train": [...], "test": [...]} for the halves present. Audio without a transcript line and
    transcript lines without audio are skipped with a warning.
    """
    root = Path(root)
    halves = {"train": ("an4_train.transcription", "an4_clstk"),
              "test": ("an4_test.transcription", "an4test_clstk")}
    found: dict[str, list[Utterance]] = {}
    for half, (trans_name, wav_dir) in halves.items():
        trans = root / "etc" / trans_name
        if not trans.is_file():
            continue
        audio = {p.stem: p for p in (root / "wav" / wav_dir).rglob("*.sph")}
        candidates, seen = [], set()
        for n, line in enumerate(trans.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            m = _AN4_LINE.match(line)
            if not m:
                log.warning("%s:%d: cannot parse transcript line %r", trans, n, line)
                continue
            uid = m["id"]
            if uid not in audio:
                log.warning("%s:%d: no audio file for %s", trans, n, uid)
                continue
            seen.add(uid)
            speaker = audio[uid].parent.name
            candidates.append((uid, audio[uid], m["text"], speaker))
        untranscribed = sorted(set(audio) - seen)
        if untranscribed:
            log.warning("AN4 %s: %d audio files have no transcript and are skipped: %s",
                        half, len(untranscribed), ", ".join(untranscribed[:5])
                        + (" ..." if len(untranscribed) > 5 else ""))
        found[half] = _with_durations(candidates)
    if not found:
        raise InputError(f"{root}: no AN4 transcription files under etc/ (expected etc/an4_train.transcription)")
    return found


def scan_librispeech(root: str | Path) -> dict[str, list[Utterance]]:
    """Every subset folder (e.g. train-clean-100) found under `root`, `root/LibriSpeech`, or `root` itself.

    Layout: <subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt with one
    "<utt-id> TEXT" line per <utt-id>.flac beside it.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such directory")
    subsets: dict[str, list[tuple[str, Path, str, str]]] = {}
    for trans in sorted(root.rglob("*.trans.txt")):
        subset = trans.parents[2].name  # <subset>/<speaker>/<chapter>/<file>
        for line in trans.read_text(encoding="utf-8", errors="replace").splitlines():
            uid, _, text = line.strip().partition(" ")
            if not uid:
                continue
            flac = trans.parent / f"{uid}.flac"
            if not flac.is_file():
                log.warning("%s: no audio file %s", trans, flac.name)
                continue
            subsets.setdefault(subset, []).append((uid, flac, text.strip(), uid.split("-")[0]))
    if not subsets:
        raise InputError(f"{root}: no LibriSpeech *.trans.txt files found")
    return {name: _with_durations(c) for name, c in subsets.items()}


def split_by_speaker(utts: list[Utterance], fraction: float, seed: int = 0,
                     group=None) -> tuple[list[Utterance], list[Utterance]]:
    """-> (rest, held_out): whole speakers held out until `fraction` of the utterances.

    Speakers are shuffled with `seed`. With `group` (speaker -> key), the fraction is taken from
    each group separately, so that e.g. both sexes appear in a dev set (AN4 speaker ids begin
    with f or m).
    """
    per_speaker = Counter(u.speaker or u.id for u in utts)
    groups: dict[str, list[str]] = {}
    for s in sorted(per_speaker):
        groups.setdefault(group(s) if group else "", []).append(s)
    rng, held = random.Random(seed), set()
    for speakers in groups.values():
        rng.shuffle(speakers)
        target, count = fraction * sum(per_speaker[s] for s in speakers), 0
        for s in speakers:
            if count >= target:
                break
            held.add(s)
            count += per_speaker[s]
    rest = [u for u in utts if (u.speaker or u.id) not in held]
    return rest, [u for u in utts if (u.speaker or u.id) in held]
