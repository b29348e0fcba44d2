"""Kaldi data directories (`wav.scp`, `text`, `utt2spk`, optional `segments` and `spk2gender`) -> manifests.

The interchange format of Kaldi, ESPnet and lhotse. Only plain file paths in `wav.scp` are read: an
entry that is a shell command (`sox a.flac -t wav - |`) or an offset into an archive (`a.ark:123`) is
refused with one line naming it, as running commands from a data file is not something a scanner should do.
With `segments`, each utterance is a stretch of a recording; those stretches are cut once into FLAC files
(the rest of the toolkit reads whole files only), so training never decodes a whole recording per segment.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from asr.atomic import atomic_open
from asr.data import Utterance
from asr.errors import InputError

log = logging.getLogger(__name__)


def _table(path: Path, required: bool = True) -> dict[str, str]:
    """`<key> <value...>` lines -> {key: value}; a missing optional file gives {}."""
    if not path.is_file():
        if required:
            raise InputError(f"{path}: not found (a Kaldi data directory needs wav.scp, text and utt2spk)")
        return {}
    out = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    for n, line in enumerate(lines, 1):
        key, _, value = line.strip().partition(" ") if "\t" not in line.strip() else line.strip().partition("\t")
        if not key:
            continue
        if key in out:
            raise InputError(f"{path}:{n}: duplicate key {key!r}")
        out[key] = value.strip()
    return out


def _wav_path(scp: Path, n: int, rec: str, entry: str, root: Path) -> Path:
    if entry.endswith("|"):
        raise InputError(f"{scp}:{n}: {rec} is a piped command ({entry!r}); asr reads plain audio paths only: "
                         "write the audio to files first (e.g. with Kaldi's wav-copy or sox) and list their paths")
    if ".ark:" in entry:
        raise InputError(f"{scp}:{n}: {rec} is an offset into a Kaldi archive ({entry!r}); asr reads plain audio "
                         "paths only: extract the audio to files first (wav-copy ark:... ) and list their paths")
    path = Path(entry)
    return path if path.is_absolute() else root / path


def scan_kaldi(data_dir: str | Path, root: str | Path | None = None,
               segments_dir: str | Path | None = None) -> tuple[list[Utterance], dict[str, str], list[str]]:
    """A Kaldi data directory -> (utterances in `text` order, speaker -> gender, problems).

    Relative paths in `wav.scp` are resolved against `root` (default: the current directory, as in a
    Kaldi recipe). With a `segments` file, `segments_dir` receives the cut audio (required then).
    Utterances without audio, speaker or a usable transcript are skipped and described in `problems`.
    """
    from asr.corpora import _with_durations

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: no such directory")
    root = Path(root) if root is not None else Path.cwd()
    scp_path = data_dir / "wav.scp"
    wav_lines = _table(scp_path)
    texts, utt2spk = _table(data_dir / "text"), _table(data_dir / "utt2spk")
    segments = _table(data_dir / "segments", required=False)
    genders = {spk: g.lower()[:1] for spk, g in _table(data_dir / "spk2gender", required=False).items()}
    recordings = {rec: _wav_path(scp_path, n, rec, entry, root)
                  for n, (rec, entry) in enumerate(wav_lines.items(), 1)}
    missing = [rec for rec, path in recordings.items() if not path.is_file()]
    if missing and len(missing) == len(recordings):
        raise InputError(f"{scp_path}: none of its {len(recordings)} audio files exists under {root.resolve()} "
                         f"(first: {recordings[missing[0]]}); relative paths are resolved against --root")
    problems = [f"{scp_path}: {rec}: no audio file {recordings[rec]}" for rec in missing]
    candidates = []
    for uid, text in texts.items():
        speaker = utt2spk.get(uid)
        rec = segments[uid].split()[0] if uid in segments else uid
        if speaker is None:
            problems.append(f"{data_dir / 'utt2spk'}: no speaker for {uid}")
        elif not text.strip():
            problems.append(f"{data_dir / 'text'}: empty transcript for {uid}")
        elif segments and uid not in segments:
            problems.append(f"{data_dir / 'segments'}: no segment for {uid}")
        elif rec not in recordings:
            problems.append(f"{scp_path}: no recording {rec} (for {uid})")
        elif rec not in missing:
            candidates.append((uid, recordings[rec], " ".join(text.split()), speaker))
    if segments:
        if segments_dir is None:
            raise ValueError("a data directory with segments needs segments_dir for the cut audio")
        candidates, cut_problems = _cut_segments(candidates, segments, data_dir / "segments", Path(segments_dir))
        problems += cut_problems
    utts = _with_durations(candidates)
    read = {u.id for u in utts}
    problems += [f"{path}: unreadable audio (for {uid})" for uid, path, _, _ in candidates if uid not in read]
    if not utts:
        raise InputError(f"{data_dir}: no usable utterance (" + (problems[0] if problems else "empty text") + ")")
    return utts, genders, problems


def _cut_segments(candidates, segments: dict[str, str], seg_path: Path, out_dir: Path):
    """Each (uid, recording, ...) -> (uid, out_dir/uid.flac, ...), cut at the segment's start and end times."""
    import soundfile

    out_dir.mkdir(parents=True, exist_ok=True)
    cut, problems = [], []
    for uid, rec_path, text, speaker in candidates:
        fields = segments[uid].split()
        try:
            start, end = float(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            problems.append(f"{seg_path}: {uid}: expected '<utt-id> <recording-id> <start> <end>'")
            continue
        target = out_dir / (uid.replace("/", "_") + ".flac")
        if not target.is_file() or target.stat().st_mtime < rec_path.stat().st_mtime:
            try:
                with soundfile.SoundFile(str(rec_path)) as f:
                    rate = f.samplerate
                    f.seek(int(start * rate))
                    frames = -1 if end < 0 else max(0, int((end - start) * rate))  # end -1: to the end (Kaldi)
                    audio = f.read(frames, dtype="float32", always_2d=True)
            except (RuntimeError, soundfile.LibsndfileError) as e:
                problems.append(f"{rec_path}: cannot read for segment {uid} ({e})")
                continue
            if not len(audio):
                problems.append(f"{seg_path}: {uid}: empty segment ({start}-{end} s)")
                continue
            with atomic_open(target) as f:
                soundfile.write(f, np.clip(audio, -1, 1), rate, format="FLAC")
        cut.append((uid, target, text, speaker))
    return cut, problems
