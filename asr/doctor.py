"""`asr doctor`: check manifests and their audio before training, so that bad data is found up front.

Every utterance's audio is read once (in parallel processes) and measured; the transcripts are
tokenized with the vocabulary training would use. Problems fall into two kinds:

- blocking: what training cannot use at all: unusable manifest lines, unreadable or empty audio,
  empty transcripts, transcripts CTC cannot align to the audio. ``--clean`` drops these utterances,
  and any of them makes the exit code 1.
- warnings: what is probably wrong but still trainable: characters outside the vocabulary, a
  manifest duration that disagrees with the file, very short, very long or unusual durations, an
  implausible speech rate, near-silence, clipping, a sample rate or channel count unlike the rest,
  one audio file used by several utterances.

The CTC feasibility rule lives here and `asr.train.filter_trainable` uses the same function.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from asr.data import Utterance
from asr.errors import InputError
from asr.model import available_cores, output_lengths

HOP_SAMPLES = 160  # 10 ms feature frames at 16 kHz (FeatureConfig.hop_length)
LEVEL_FRAME = 400  # 25 ms blocks for the speech level


# --- CTC feasibility (shared with training) -------------------------------------------------------


def ctc_frames_needed(ids: Sequence[int]) -> int:
    """Output frames CTC needs for a label sequence: one per label, plus a blank between repeats."""
    return len(ids) + sum(a == b for a, b in zip(ids, ids[1:], strict=False))


def ctc_feasible(ids: Sequence[int], input_frames: int) -> bool:
    """Whether `ids` fit into the output frames that `input_frames` 10 ms frames become after x4 subsampling."""
    return ctc_frames_needed(ids) <= int(output_lengths(input_frames))


# --- thresholds and problem kinds -----------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    # Manifest vs file: off by more than both of these (0.1 s absorbs header rounding on short
    # clips, 5 % keeps long files from being flagged for a few frames).
    duration_tolerance_seconds: float = 0.1
    duration_tolerance_ratio: float = 0.05
    min_seconds: float = 0.3  # shorter is rarely a whole word
    max_seconds: float = 30.0  # longer is slow and memory-hungry to train on (and `asr train` drops it)
    # Modified z-score 0.6745 (x - median) / MAD of log duration (Iglewicz & Hoaglin's 3.5).
    outlier_z: float = 3.5
    clip_level: float = 0.999  # |sample| at or above this counts as clipped
    clip_fraction: float = 0.001  # more than 0.1 % of samples clipped
    # Level of the loudest 5 % of 25 ms blocks: speech in real recordings sits far above this
    # (AN4's quietest utterance: -38 dBFS); the whole-file RMS is reported but, dragged down by
    # pauses, is not what decides.
    silence_dbfs: float = -50.0
    min_chars_per_second: float = 0.5  # letters (no spaces) per second of audio
    max_chars_per_second: float = 20.0  # fast read speech is ~15; CTC's hard limit is 25 labels/s


# key: (title, blocking). The order is the order of the report.
CATEGORIES: dict[str, tuple[str, bool]] = {
    "manifest_line": ("unusable manifest lines (skipped)", True),
    "unreadable_audio": ("unreadable or empty audio", True),
    "empty_transcript": ("empty transcript", True),
    "ctc_impossible": ("transcript too long for its audio (CTC impossible)", True),
    "unknown_characters": ("characters outside the vocabulary", False),
    "duration_mismatch": ("manifest duration differs from the file", False),
    "too_short": ("very short audio", False),
    "too_long": ("very long audio", False),
    "duration_outlier": ("unusual duration for this data (median/MAD)", False),
    "speech_rate": ("implausible speech rate", False),
    "near_silence": ("near-silent audio", False),
    "clipping": ("clipped audio", False),
    "sample_rate": ("sample rate unlike the majority", False),
    "channels": ("channel count unlike the majority", False),
    "duplicate_audio": ("audio file shared by several utterances", False),
}
BLOCKING = tuple(k for k, (_, blocking) in CATEGORIES.items() if blocking)


# --- measuring one file (runs in worker processes) ------------------------------------------------


def inspect_audio(path: str, clip_level: float = Thresholds.clip_level) -> dict:
    """Read `path` once and measure it. Never raises: a file that cannot be read gives ``error``."""
    import soundfile

    from asr.audio import SAMPLE_RATE, load_audio

    stats: dict = {"error": None, "sample_rate": None, "channels": None}
    try:
        info = soundfile.info(path)  # the header: rate and channels before load_audio resamples and mixes
        stats["sample_rate"], stats["channels"] = int(info.samplerate), int(info.channels)
        header_seconds = info.frames / info.samplerate if info.samplerate > 0 and info.frames > 0 else None
    except Exception:  # not a format libsndfile knows; load_audio may still read it (or say why not)
        header_seconds = None
    try:
        audio = load_audio(path)
    except InputError as e:
        stats["error"] = str(e)
        return stats
    except Exception as e:  # a decoder failing some other way still costs one file, not the run
        stats["error"] = f"{path}: cannot read audio ({type(e).__name__}: {e})".splitlines()[0]
        return stats
    samples = len(audio)
    stats["samples"] = samples
    stats["seconds"] = header_seconds if header_seconds is not None else samples / SAMPLE_RATE
    wave = audio.astype(np.float64)
    stats["clipped_fraction"] = float(np.mean(np.abs(wave) >= clip_level))
    stats["rms_dbfs"] = _dbfs(math.sqrt(float(np.mean(wave * wave))))
    blocks = samples // LEVEL_FRAME
    if blocks >= 1:
        block_rms = np.sqrt(np.mean(wave[: blocks * LEVEL_FRAME].reshape(blocks, LEVEL_FRAME) ** 2, axis=1))
        stats["speech_dbfs"] = _dbfs(float(np.percentile(block_rms, 95)))
    else:
        stats["speech_dbfs"] = stats["rms_dbfs"]
    return stats


def _dbfs(rms: float) -> float:
    return round(20 * math.log10(rms), 1) if rms > 1e-6 else -120.0  # floor: digital silence


# --- the check --------------------------------------------------------------------------------------


@dataclass
class Report:
    """What `diagnose` found: `data` is the JSON report, `kept` the utterances without blocking problems."""

    data: dict
    kept: list[Utterance] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.data["ok"]


def default_workers() -> int:
    """Processes reading audio: one per core this process may use, at most 16."""
    return max(1, min(16, available_cores()))


def load_tokenizer(texts: list[str], tokenizer: str | None = None, model: str | None = None):
    """-> (tokenizer, description): the checkpoint's if `model` is given, else `tokenizer` (char or bpe:N)."""
    if model is not None:
        from asr.model import read_checkpoint
        from asr.text import tokenizer_from_dict

        return tokenizer_from_dict(read_checkpoint(model)["tokenizer"]), f"tokenizer of {model}"
    from asr.text import build_tokenizer

    spec = tokenizer or "char"
    try:
        tok = build_tokenizer(spec, texts)
    except ValueError as e:
        raise InputError(f"--tokenizer {spec}: {e}") from None
    return tok, "the default character set" if spec == "char" else f"{spec} trained on these transcripts"


def diagnose(manifests: Sequence[str | Path], tokenizer: str | None = None, model: str | None = None,
             workers: int | None = None, thresholds: Thresholds = Thresholds(), progress: bool | None = None
             ) -> Report:
    """Check every utterance of `manifests` (one data set). Raises InputError for a missing manifest."""
    from asr.data import read_manifest
    from asr.text import normalize_text

    th = thresholds
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    issues: dict[str, list[dict]] = {k: [] for k in CATEGORIES}
    utts: list[Utterance] = []
    origin: list[str] = []
    first_seen: dict[str, str] = {}
    for manifest in manifests:
        got, problems = read_manifest(manifest)  # InputError for a missing or non-UTF-8 manifest
        issues["manifest_line"] += [{"manifest": str(manifest), "detail": p} for p in problems]
        for u in got:
            if u.id in first_seen:
                issues["manifest_line"].append({"manifest": str(manifest), "id": u.id, "detail":
                                                f"{manifest}: duplicate id {u.id!r} (already in {first_seen[u.id]})"})
                continue
            first_seen[u.id] = str(manifest)
            utts.append(u)
            origin.append(str(manifest))

    tok, tok_description = load_tokenizer([u.text for u in utts], tokenizer, model)
    stats = _inspect_all([u.audio for u in utts], workers, th.clip_level,
                         sys.stderr.isatty() if progress is None else progress)

    def add(kind: str, i: int, detail: str, **extra) -> None:
        u = utts[i]
        issues[kind].append({"id": u.id, "manifest": origin[i], "audio": u.audio, "detail": detail, **extra})

    unknown_chars: dict[str, dict] = {}
    durations: dict[int, float] = {}  # index -> seconds in the file, for readable audio
    rates: Counter[int] = Counter()
    channels: Counter[int] = Counter()
    audio_users: dict[str, list[int]] = {}
    for i, (u, s) in enumerate(zip(utts, stats, strict=True)):
        audio_users.setdefault(os.path.normpath(u.audio), []).append(i)
        # Text.
        normalized = normalize_text(u.text)
        tok.unknown.clear()
        ids = tok.encode(u.text)
        unknown = Counter(tok.unknown)
        if unknown:
            add("unknown_characters", i, f"{describe_chars(unknown)} in {u.text!r}", characters=dict(unknown))
            for c, n in unknown.items():
                entry = unknown_chars.setdefault(c, {"count": 0, "utterances": 0, "examples": []})
                entry["count"] += n
                entry["utterances"] += 1
                if len(entry["examples"]) < 3:
                    entry["examples"].append(u.id)
        if not normalized:
            add("empty_transcript", i, "no transcript" if not u.text.strip() else
                f"transcript {u.text!r} is empty once normalised")
        elif not ids:
            add("empty_transcript", i, f"no character of {u.text!r} is in the vocabulary")
        # Audio.
        if s["error"] is not None:
            add("unreadable_audio", i, s["error"])
            continue
        seconds = s["seconds"]
        durations[i] = seconds
        if s["sample_rate"] is not None:
            rates[s["sample_rate"]] += 1
            channels[s["channels"]] += 1
        off = abs(seconds - u.duration)
        if off > th.duration_tolerance_seconds and off > th.duration_tolerance_ratio * u.duration:
            add("duration_mismatch", i, f"manifest says {u.duration:.2f} s, the file holds {seconds:.2f} s",
                manifest_seconds=u.duration, file_seconds=round(seconds, 3))
        if seconds < th.min_seconds:
            add("too_short", i, f"{seconds:.2f} s (< {th.min_seconds} s)", seconds=round(seconds, 3))
        elif seconds > th.max_seconds:
            add("too_long", i, f"{seconds:.1f} s (> {th.max_seconds} s)", seconds=round(seconds, 3))
        input_frames = 1 + s["samples"] // HOP_SAMPLES
        ctc_ok = ctc_feasible(ids, input_frames)
        if not ctc_ok:
            need, have = ctc_frames_needed(ids), int(output_lengths(input_frames))
            add("ctc_impossible", i, f"{_n(len(ids), 'token')} + {_n(need - len(ids), 'repeat')} need {need} "
                f"output frames, {seconds:.2f} s of audio gives {have}", frames_needed=need, output_frames=have)
        letters = len(normalized.replace(" ", ""))
        if letters and ctc_ok and seconds > 0:
            rate = letters / seconds
            if rate > th.max_chars_per_second or rate < th.min_chars_per_second:
                add("speech_rate", i, f"{rate:.1f} characters/s ({letters} in {seconds:.2f} s; plausible "
                    f"{th.min_chars_per_second}-{th.max_chars_per_second})", chars_per_second=round(rate, 2))
        if s["speech_dbfs"] < th.silence_dbfs:
            add("near_silence", i, f"loudest 5 % at {s['speech_dbfs']:.1f} dBFS (< {th.silence_dbfs:g} dBFS), "
                f"RMS {s['rms_dbfs']:.1f} dBFS", speech_dbfs=s["speech_dbfs"], rms_dbfs=s["rms_dbfs"])
        if s["clipped_fraction"] > th.clip_fraction:
            add("clipping", i, f"{100 * s['clipped_fraction']:.2f} % of samples at full scale "
                f"(> {100 * th.clip_fraction:g} %)", clipped_fraction=round(s["clipped_fraction"], 5))

    # Across the data set.
    flagged_length = {e["id"] for e in issues["too_short"] + issues["too_long"]}
    median_seconds = _median(list(durations.values()))
    for i, z in _robust_z({i: math.log(d) for i, d in durations.items() if d > 0}).items():
        if abs(z) > th.outlier_z and utts[i].id not in flagged_length:
            add("duration_outlier", i, f"{durations[i]:.2f} s, robust z {z:+.1f} of log duration (median "
                f"{median_seconds:.2f} s)", seconds=round(durations[i], 3), z=round(z, 2))
    for kind, counter, unit in (("sample_rate", rates, "Hz"), ("channels", channels, "channel")):
        if len(counter) > 1:
            majority = counter.most_common(1)[0][0]
            for i, s in enumerate(stats):
                if s["error"] is None and s[kind] is not None and s[kind] != majority:
                    add(kind, i, f"{_n(s[kind], unit)} (most files: {_n(majority, unit)})", value=s[kind])
    for users in audio_users.values():
        if len(users) > 1:
            for i in users:
                others = [utts[j].id for j in users if j != i]
                more = f" and {len(others) - 3} more" if len(others) > 3 else ""
                add("duplicate_audio", i, f"also used by {', '.join(others[:3])}{more}")

    blocked = {e["id"] for k in BLOCKING if k != "manifest_line" for e in issues[k]}
    kept = [u for u in utts if u.id not in blocked]
    warned = {e["id"] for k, (_, blocking) in CATEGORIES.items() if not blocking for e in issues[k]} - blocked
    ok = bool(utts) and not blocked and not issues["manifest_line"]
    seconds_all = list(durations.values())
    data = {
        "manifests": [str(m) for m in manifests],
        "utterances": len(utts),
        "audio_seconds": round(sum(seconds_all), 2),
        "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size, "source": tok_description},
        "workers": workers,
        "thresholds": asdict(th),
        "ok": ok,
        "blocked_utterances": len(blocked),
        "unusable_manifest_lines": len(issues["manifest_line"]),
        "warned_utterances": len(warned),
        "kept_utterances": len(kept),
        "categories": {k: {"title": title, "blocking": blocking, "count": len(issues[k]), "items": issues[k]}
                       for k, (title, blocking) in CATEGORIES.items()},
        "unknown_characters": dict(sorted(unknown_chars.items(), key=lambda kv: -kv[1]["count"])),
        "distributions": {
            "sample_rate": {str(k): v for k, v in rates.most_common()},
            "channels": {str(k): v for k, v in channels.most_common()},
            "seconds": ({"min": round(min(seconds_all), 3), "median": round(_median(seconds_all), 3),
                         "max": round(max(seconds_all), 3)} if seconds_all else {}),
        },
    }
    data["verdict"] = _verdict(data)
    return Report(data, kept)


def _inspect_all(paths: list[str], workers: int, clip_level: float, progress: bool) -> list[dict]:
    """inspect_audio over `paths`, in `workers` processes (decoding holds the GIL, so threads do not help)."""
    from functools import partial

    from tqdm import tqdm

    def collect(results) -> list[dict]:
        with tqdm(total=len(paths), unit="file", desc="reading audio", disable=not progress, leave=False) as bar:
            out = []
            for r in results:
                out.append(r)
                bar.update()
            return out

    inspect = partial(inspect_audio, clip_level=clip_level)
    if workers == 1 or len(paths) <= 1:
        return collect(map(inspect, paths))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork on Linux: workers start at once with everything imported (spawn would import torch anew in each).
    context = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
    chunk = max(1, min(32, len(paths) // (4 * workers)))
    with ProcessPoolExecutor(min(workers, len(paths)), mp_context=context) as pool:
        # map submits at once, so the workers fork before tqdm starts its monitor thread.
        return collect(pool.map(inspect, paths, chunksize=chunk))


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def _robust_z(values: dict[int, float]) -> dict[int, float]:
    """Modified z-scores 0.6745 (x - median) / MAD; none with fewer than 5 values or a zero MAD."""
    if len(values) < 5:
        return {}
    x = np.array(list(values.values()))
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    if mad <= 0:
        return {}
    return {i: 0.6745 * (v - med) / mad for i, v in values.items()}


def _n(count: int, word: str) -> str:
    """'1 repeat', '2 repeats'; units (Hz) stay as they are."""
    return f"{count} {word}{'' if count == 1 or word == 'Hz' else 's'}"


def describe_chars(counts: Counter[str]) -> str:
    return ", ".join(f"{c!r} x{n}" for c, n in counts.most_common())


def _verdict(data: dict) -> str:
    n = data["utterances"]
    warnings = data["warned_utterances"]
    if n == 0:
        return "verdict: FAIL - no usable utterances"
    if data["ok"]:
        return f"verdict: OK - {_n(n, 'utterance')}, none with blocking problems" + (
            f"; {warnings} with warnings" if warnings else "")
    warn = f"; {warnings} more with warnings only" if warnings else ""
    parts = []
    if data["blocked_utterances"]:
        parts.append(f"{data['blocked_utterances']} of {_n(n, 'utterance')} "
                     f"{'has' if data['blocked_utterances'] == 1 else 'have'} blocking problems")
    if data["unusable_manifest_lines"]:
        lines = data["unusable_manifest_lines"]
        parts.append(f"{_n(lines, 'manifest line')} {'is' if lines == 1 else 'are'} unusable")
    return f"verdict: FAIL - {' and '.join(parts)} (--clean OUT.jsonl writes the rest){warn}"


# --- output -----------------------------------------------------------------------------------------


def format_report(report: Report, examples: int = 5) -> str:
    d = report.data
    dist = d["distributions"]
    lines = [f"{_n(d['utterances'], 'utterance')}, {d['audio_seconds'] / 60:.1f} min of readable audio, from "
             f"{', '.join(d['manifests'])}",
             f"vocabulary: {d['tokenizer']['kind']}, {d['tokenizer']['vocab_size']} symbols "
             f"({d['tokenizer']['source']})"]
    if dist["seconds"]:
        s = dist["seconds"]
        lines.append(f"durations {s['min']:.2f}-{s['max']:.2f} s (median {s['median']:.2f} s); sample rates "
                     + ", ".join(f"{k} Hz x{v}" for k, v in dist["sample_rate"].items())
                     + "; channels " + ", ".join(f"{k} x{v}" for k, v in dist["channels"].items()))
    for blocking, heading in ((True, "BLOCKING (dropped by --clean)"), (False, "WARNINGS (kept by --clean)")):
        found = [(k, c) for k, c in d["categories"].items() if c["blocking"] == blocking and c["count"]]
        if not found:
            continue
        lines += ["", heading]
        for key, c in found:
            lines.append(f"  {c['title']}: {c['count']}")
            if key == "unknown_characters":
                for ch, e in d["unknown_characters"].items():
                    lines.append(f"    {ch!r} x{e['count']} in {_n(e['utterances'], 'utterance')}, "
                                 f"e.g. {', '.join(e['examples'])}")
                continue
            for item in c["items"][:examples]:
                where = f"{item['id']}: " if "id" in item and key != "manifest_line" else ""
                lines.append(f"    {where}{item['detail']}")
            if c["count"] > examples:
                lines.append(f"    ... and {c['count'] - examples} more (all in --json)")
    lines += ["", d["verdict"]]
    return "\n".join(lines)


def run_doctor(manifests: Sequence[str], tokenizer: str | None = None, model: str | None = None,
               workers: int | None = None, clean: str | None = None, json_path: str | None = None,
               out=None) -> int:
    """The `asr doctor` command: print the report, write --json and --clean; 0 when nothing blocks, else 1."""
    from asr.atomic import atomic_write_text
    from asr.data import write_manifest

    out = out or sys.stdout
    report = diagnose(manifests, tokenizer=tokenizer, model=model, workers=workers)
    text = format_report(report)
    body, verdict = text.rsplit("\n", 1)
    print(body, file=out)
    if json_path:
        atomic_write_text(json_path, json.dumps(report.data, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote the full report to {json_path}", file=out)
    if clean:
        write_manifest(clean, report.kept)
        print(f"wrote {clean}: {len(report.kept)} of {_n(report.data['utterances'], 'utterance')} "
              f"({report.data['blocked_utterances']} with blocking problems left out)", file=out)
    print(verdict, file=out, flush=True)
    return 0 if report.ok else 1
