"""Corpus scanners: an official corpus layout on disk -> manifests of Utterances.

Durations come from file headers (no decoding), read in parallel threads since the work is I/O.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import random
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asr.audio import AUDIO_EXTENSIONS, audio_duration, audio_files
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


def _with_durations(candidates: list[tuple[str, Path, str, str]],
                    known: dict[str, float] | None = None) -> list[Utterance]:
    """Utterances with durations from the headers; `known` (absolute path -> seconds) skips those reads."""
    known = known or {}
    todo = [path for _, path, _, _ in candidates if str(path) not in known]
    read = dict(zip(map(str, todo), _durations(todo), strict=True))
    out = []
    for uid, path, text, speaker in candidates:
        d = known.get(str(path), read.get(str(path)))
        if d is not None and d > 0:
            out.append(Utterance(uid, str(path), d, text, speaker))
    return out


def _cached_durations(manifest: Path) -> dict[str, float]:
    """Durations from a manifest written earlier, for the audio files not modified since it was written."""
    from asr.data import read_manifest

    if not manifest.is_file():
        return {}
    written = manifest.stat().st_mtime_ns
    utts, _ = read_manifest(manifest)
    known = {}
    for u in utts:
        try:
            if os.stat(u.audio).st_mtime_ns <= written:
                known[str(Path(u.audio).resolve())] = u.duration
        except OSError:
            continue
    return known


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


def scan_librispeech(root: str | Path, cache_dir: str | Path | None = None) -> dict[str, list[Utterance]]:
    """Every subset folder (e.g. train-clean-100) found under `root`, `root/LibriSpeech`, or `root` itself.

    Layout: <subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt with one
    "<utt-id> TEXT" line per <utt-id>.<ext> beside it: .flac as OpenSLR ships it, or any audio
    extension asr reads (a copy re-encoded to .opus or .wav, say).

    With `cache_dir`, the `<subset>.jsonl` (and `<subset>-dev.jsonl`) manifests already there serve as a
    cache: the durations of audio files not modified since a manifest was written are taken from it.
    """
    root = Path(root).resolve()  # absolute paths: they are also the keys of the duration cache
    if not root.is_dir():
        raise InputError(f"{root}: no such directory")
    subsets: dict[str, list[tuple[str, Path, str, str]]] = {}
    for trans in sorted(root.rglob("*.trans.txt")):
        subset = trans.parents[2].name  # <subset>/<speaker>/<chapter>/<file>
        audio = {p.stem: p for p in sorted(trans.parent.iterdir(), reverse=True)
                 if p.suffix.lower() in AUDIO_EXTENSIONS}  # reversed: of two formats, .flac wins over .opus
        for line in trans.read_text(encoding="utf-8", errors="replace").splitlines():
            uid, _, text = line.strip().partition(" ")
            if not uid:
                continue
            if uid not in audio:
                log.warning("%s: no audio file %s.flac (or another audio extension)", trans, uid)
                continue
            subsets.setdefault(subset, []).append((uid, audio[uid], text.strip(), uid.split("-")[0]))
    if not subsets:
        raise InputError(f"{root}: no LibriSpeech *.trans.txt files found")
    cache = Path(cache_dir) if cache_dir is not None else None

    def known(name: str) -> dict[str, float]:
        return {**_cached_durations(cache / f"{name}.jsonl"), **_cached_durations(cache / f"{name}-dev.jsonl")}

    return {name: _with_durations(c, known(name) if cache else None) for name, c in subsets.items()}


def librispeech_genders(root: str | Path) -> dict[str, str]:
    """Reader id -> 'f' or 'm' from the SPEAKERS.TXT found under `root` ({} when there is none)."""
    genders = {}
    for table in Path(root).rglob("SPEAKERS.TXT"):
        for line in table.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = [f.strip() for f in line.split("|")]
            if not line.startswith(";") and len(fields) >= 2 and fields[1] in ("F", "M"):
                genders[fields[0]] = fields[1].lower()
    return genders


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


# Your own data: a folder of audio files with .txt transcripts, or a table ---------------------------

_FOLDER_SKIPS = {  # reason -> how the warning describes the skipped files
    "no transcript": "audio files have no .txt transcript beside them (same name, .txt extension)",
    "empty transcript": "audio files have an empty .txt transcript",
    "transcript not UTF-8": "audio files have a .txt transcript that is not UTF-8 text",
    "same name": "audio files share their name (and so their transcript and id) with another audio file in "
                 "the same folder; the first by name is kept",
    "unreadable audio": "audio files cannot be read (see the warnings above)",
}


def scan_folder(root: str | Path, speaker_from: str | None = None) -> tuple[list[Utterance], dict[str, list[str]]]:
    """Audio files of any format under `root` (recursively), each with a same-name `.txt` transcript beside it.

    `talks/anna/001.flac` + `talks/anna/001.txt` -> id `anna/001` (the path below `root` without its
    extension, with `/` between folders: unique, and readable back to the file). The transcript is read
    as UTF-8 (a byte-order mark is tolerated); runs of spaces and line breaks become single spaces.
    `speaker_from`: None (no speaker) or "dir" (the name of the folder holding the file).

    -> (utterances in path order, skipped: reason -> paths below `root`). Audio without a transcript,
    with an empty or non-UTF-8 transcript, or that cannot be read is skipped; each reason is logged
    once with its count and a few of the files.
    """
    if speaker_from not in (None, "dir"):
        raise ValueError(f"speaker_from must be None or 'dir', not {speaker_from!r}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such directory")
    base = root.resolve()
    audio = [p.relative_to(root) for p in audio_files(root)]
    if not audio:
        raise InputError(f"{root}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) in this folder or below")
    skipped: dict[str, list[str]] = {reason: [] for reason in _FOLDER_SKIPS}
    candidates, ids = [], set()
    for rel in audio:
        uid = rel.with_suffix("").as_posix()
        if uid in ids:
            skipped["same name"].append(rel.as_posix())
            continue
        ids.add(uid)
        path = base / rel
        transcript = next((t for t in (path.with_suffix(".txt"), path.with_suffix(".TXT")) if t.is_file()), None)
        if transcript is None:
            skipped["no transcript"].append(rel.as_posix())
            continue
        try:
            text = " ".join(transcript.read_text(encoding="utf-8-sig").split())
        except UnicodeDecodeError:
            skipped["transcript not UTF-8"].append(rel.as_posix())
            continue
        if not text:
            skipped["empty transcript"].append(rel.as_posix())
            continue
        candidates.append((uid, path, text, path.parent.name if speaker_from == "dir" else None))
    utts = _with_durations(candidates)
    kept = {u.id for u in utts}
    skipped["unreadable audio"] = [path.relative_to(base).as_posix() for uid, path, _, _ in candidates
                                   if uid not in kept]
    for reason, files in skipped.items():
        if files:
            log.warning("%s: %d %s, skipped: %s", root, len(files), _FOLDER_SKIPS[reason],
                        ", ".join(files[:5]) + (" ..." if len(files) > 5 else ""))
    if not utts:
        raise InputError(f"{root}: none of the {len(audio)} audio files has a usable transcript "
                         f"(each needs a non-empty <name>.txt beside <name>.<ext>)")
    return utts, {reason: files for reason, files in skipped.items() if files}


def speakers_by_regex(utts: list[Utterance], pattern: str) -> list[Utterance]:
    """Each utterance's speaker from `pattern` searched in its id: the first group, else the whole match."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise InputError(f"--speaker-regex {pattern!r}: not a valid regular expression ({e})") from None
    out, unmatched = [], []
    for u in utts:
        m = regex.search(u.id)
        if m is None:
            unmatched.append(u.id)
            continue
        out.append(Utterance(u.id, u.audio, u.duration, u.text, m.group(1) if regex.groups else m.group(0)))
    if unmatched:
        raise InputError(f"--speaker-regex {pattern!r} does not match {len(unmatched)} of {len(utts)} ids "
                         f"(e.g. {unmatched[0]!r}); it is searched in ids such as {utts[0].id!r}")
    return out


# Column names looked for, in this order, when a table's column is not named explicitly (case-insensitive).
AUDIO_COLUMNS = ("path", "audio", "file", "filename", "audio_filepath", "wav", "audio_path", "file_name",
                 "filepath", "wav_filename")
TEXT_COLUMNS = ("text", "transcript", "sentence", "transcription", "normalized_text")
DURATION_COLUMNS = ("duration", "duration_s", "duration_seconds")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk", "spk_id", "client_id")
ID_COLUMNS = ("id", "utt_id", "utterance_id", "uid")
_MAX_LOGGED = 10


def read_table(path: str | Path, audio_column: str | None = None, text_column: str | None = None,
               root: str | Path | None = None, *, speaker_column: str | None = None, id_column: str | None = None,
               ) -> tuple[list[Utterance], list[str]]:
    """A table of (audio path, transcript) rows -> (utterances in table order, problems).

    Formats: JSON Lines (`.jsonl`, `.ndjson`, `.json`, or content starting with `{`; NeMo manifests
    included), TSV (`.tsv`, `.tab`; unquoted, as Common Voice writes it), CSV (`.csv`; comma, or `;`
    when the header has no comma); any other name is sniffed from the header line. The first line of
    a CSV/TSV names the columns.

    Columns not named are chosen from AUDIO_COLUMNS, TEXT_COLUMNS, and (optional) SPEAKER_COLUMNS,
    ID_COLUMNS and DURATION_COLUMNS. Relative audio paths are resolved against `root` (default: the
    table's folder). A valid duration column saves reading the audio header. Without an id column the
    id is the audio path as written, without its extension.

    Rows that cannot be used (wrong number of fields, invalid JSON, no or empty text, missing or
    unreadable audio, duplicate id, a NeMo segment offset) are skipped; `problems` says which
    ("FILE:LINE: problem") and the first ten are logged. Raises InputError for a missing or
    non-UTF-8 file, a missing column (the message lists the columns there are), or no usable row.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the table as UTF-8") from None
    base = path.parent if root is None else Path(root)
    if not base.is_dir():
        raise InputError(f"{base}: no such directory (--root)")
    base = base.resolve()

    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or content.lstrip()[:1] in ("{", "["):
        columns, rows = _json_rows(path, content)
    else:
        columns, rows = _delimited_rows(path, content)
    if not rows:
        raise InputError(f"{path}: no rows" + ("" if columns else " (the file is empty)"))
    if not columns:  # JSON Lines without a single object
        line, problem = rows[0]
        raise InputError(f"{path}: no usable rows ({len(rows)} skipped; the first: {path}:{line}: {problem})")

    audio_col = _pick_column(path, columns, audio_column, AUDIO_COLUMNS, "audio", "--audio-column", set())
    text_col = _pick_column(path, columns, text_column, TEXT_COLUMNS, "text", "--text-column", {audio_col})
    taken = {audio_col, text_col}
    speaker_col = _pick_column(path, columns, speaker_column, SPEAKER_COLUMNS, "speaker", "--speaker-column", taken,
                               required=False)
    id_col = _pick_column(path, columns, id_column, ID_COLUMNS, "id", "--id-column", taken, required=False)
    duration_col = _pick_column(path, columns, None, DURATION_COLUMNS, "duration", "", taken, required=False)
    log.info("%s: audio from column %r, text from %r%s%s%s", path, audio_col, text_col,
             f", speaker from {speaker_col!r}" if speaker_col else "", f", id from {id_col!r}" if id_col else "",
             f", duration from {duration_col!r}" if duration_col else "")

    problems: list[tuple[int, str]] = []
    known: list[tuple[int, Utterance]] = []  # rows with a usable duration in the table
    unknown: list[tuple[int, tuple[str, Path, str, str | None]]] = []  # rows whose duration comes from the audio
    first_line: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, str):
            problems.append((line, row))
            continue
        try:
            uid, audio, text, speaker, duration = _table_row(row, base, audio_col, text_col, speaker_col, id_col,
                                                             duration_col)
        except ValueError as e:
            problems.append((line, str(e)))
            continue
        if uid in first_line:
            problems.append((line, f"duplicate id {uid!r} (first on line {first_line[uid]})"))
            continue
        first_line[uid] = line
        if duration is None:
            unknown.append((line, (uid, audio, text, speaker)))
        else:
            known.append((line, Utterance(uid, str(audio), duration, text, speaker)))
    measured = {u.id: u for u in _with_durations([c for _, c in unknown])}
    for line, (uid, audio, _, _) in unknown:
        if uid in measured:
            known.append((line, measured[uid]))
        else:
            problems.append((line, f"cannot read audio {audio}"))
    known.sort(key=lambda item: item[0])
    problems.sort(key=lambda item: item[0])
    messages = [f"{path}:{line}: {problem}" for line, problem in problems]
    for message in messages[:_MAX_LOGGED]:
        log.warning("skipping %s", message)
    if len(messages) > _MAX_LOGGED:
        log.warning("... and %d more unusable rows in %s", len(messages) - _MAX_LOGGED, path)
    if not known:
        raise InputError(f"{path}: no usable rows ({len(messages)} skipped; the first: {messages[0]})")
    return [u for _, u in known], messages


def _json_rows(path: Path, content: str) -> tuple[list[str], list[tuple[int, dict | str]]]:
    if content.lstrip().startswith("["):
        raise InputError(f"{path}: a JSON array; write one JSON object per line (JSON Lines) instead")
    columns: dict[str, None] = {}  # ordered set
    rows: list[tuple[int, dict | str]] = []
    for n, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            rows.append((n, f"invalid JSON ({e.msg})"))
            continue
        if not isinstance(row, dict):
            rows.append((n, "not a JSON object"))
            continue
        columns.update(dict.fromkeys(row))
        rows.append((n, row))
    return list(columns), rows


def _delimited_rows(path: Path, content: str) -> tuple[list[str], list[tuple[int, dict | str]]]:
    suffix = path.suffix.lower()
    header_line = next((line for line in content.splitlines() if line.strip()), "")
    counts = {d: header_line.count(d) for d in (",", "\t", ";", "|")}
    if suffix in (".tsv", ".tab"):
        delimiter = "\t"
    elif suffix == ".csv" and counts[","]:
        delimiter = ","
    else:
        delimiter = max(counts, key=counts.get) if any(counts.values()) else ","
    # TSV has no quoting (Common Voice's sentences hold unbalanced quotes); a field wholly in quotes, as
    # pandas writes some, is unquoted below.
    tsv = delimiter == "\t"
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter,
                        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)

    def clean(value: str) -> str:
        value = value.strip()
        if tsv and len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('""', '"')
        return value

    header: list[str] | None = None
    rows: list[tuple[int, dict | str]] = []
    line = 0
    try:
        for fields in reader:
            start, line = line + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue
            fields = [clean(f) for f in fields]
            if header is None:
                header = fields
                continue
            if len(fields) != len(header):
                hint = "" if tsv else f"; quote fields that contain {delimiter!r}"
                rows.append((start, f"{len(fields)} fields, the header has {len(header)}{hint}"))
                continue
            row: dict[str, str] = {}
            for name, value in zip(header, fields, strict=True):
                row.setdefault(name, value)
            rows.append((start, row))
    except csv.Error as e:
        raise InputError(f"{path}:{reader.line_num}: cannot parse the table ({e})") from None
    return header or [], rows


def _pick_column(path: Path, columns: list[str], explicit: str | None, candidates: tuple[str, ...], what: str,
                 option: str, taken: set, required: bool = True) -> str | None:
    listing = ", ".join(repr(c) for c in columns) or "none"
    if explicit is not None:
        if explicit in columns:
            return explicit
        folded = [c for c in columns if c.lower() == explicit.lower()]
        if folded:
            return folded[0]
        raise InputError(f"{path}: no column {explicit!r} ({option}); the columns are {listing}")
    for name in candidates:
        found = next((c for c in columns if c.strip().lower() == name and c not in taken), None)
        if found is not None:
            return found
    if required:
        raise InputError(f"{path}: no {what} column (looked for {', '.join(candidates)}); the columns are "
                         f"{listing} (a CSV/TSV names them on its first line); choose one with {option}")
    return None


def _table_row(row: dict, base: Path, audio_col: str, text_col: str, speaker_col: str | None, id_col: str | None,
               duration_col: str | None) -> tuple[str, Path, str, str | None, float | None]:
    audio = row.get(audio_col)
    if not isinstance(audio, str) or not audio.strip():
        raise ValueError(f"no audio path in column {audio_col!r}")
    audio = audio.strip()
    text = row.get(text_col)
    if not isinstance(text, str):
        raise ValueError(f"no text in column {text_col!r}")
    text = " ".join(text.split())
    if not text:
        raise ValueError("empty transcript")
    offset = row.get("offset")  # NeMo: a segment of a longer file
    if offset not in (None, "") and _number(offset) != 0:
        raise ValueError(f"offset {offset!r}: segments of a longer recording are not supported")
    audio_path = Path(audio) if os.path.isabs(audio) else base / audio
    if not audio_path.is_file():
        raise ValueError(f"no such audio file {audio_path}")
    duration = _number(row.get(duration_col)) if duration_col else None
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        duration = None  # read from the audio instead
    speaker = row.get(speaker_col) if speaker_col else None
    speaker = None if speaker is None or not str(speaker).strip() else str(speaker).strip()
    uid = row.get(id_col) if id_col else None
    uid = str(uid).strip() if uid is not None and str(uid).strip() else Path(audio).with_suffix("").as_posix()
    return uid, audio_path, text, speaker, duration


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
