"""Property-based fuzzing of what reads user input: the audio loaders, the manifest reader, text normalisation.

The default run tries 100 to 1000 examples per property and takes about ten seconds. To fuzz longer, set
ASR_FUZZ_EXAMPLES to the number of examples every property should try, e.g. (a few minutes):

    ASR_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py

A failure prints the falsifying example and the seed to reproduce it (`--hypothesis-seed=N`). No
example database is kept (Hypothesis' own caches go to .hypothesis/, which git ignores by itself).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import unicodedata

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.audio import audio_duration, load_audio
from asr.data import Utterance, read_manifest, write_manifest
from asr.errors import InputError
from asr.segment import read_blocks
from asr.text import normalize_text

EXAMPLES = int(os.environ.get("ASR_FUZZ_EXAMPLES", "0"))


def fuzz_settings(default: int):
    """`default` examples, or ASR_FUZZ_EXAMPLES when set."""
    # database=None: no examples saved between runs; a failure prints its example to reproduce.
    return settings(max_examples=EXAMPLES or default, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# --- audio ------------------------------------------------------------------------------------------


def _valid_files() -> dict[str, bytes]:
    """Small valid files (0.05 s of a tone, 16-bit): a WAV at 16 kHz, a stereo WAV at 8 kHz, a FLAC."""
    t = np.arange(800) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    files = {}
    stereo = np.stack([tone, -tone], 1)[:400]
    for name, data, rate, fmt in [("mono.wav", tone, 16000, "WAV"), ("stereo.wav", stereo, 8000, "WAV"),
                                  ("mono.flac", tone, 16000, "FLAC")]:
        buf = io.BytesIO()
        soundfile.write(buf, data, rate, format=fmt, subtype="PCM_16")
        files[name] = buf.getvalue()
    return files


VALID = _valid_files()


# Byte offsets of header fields. WAV: RIFF size, format, channels, rate, byte rate, block align, bits,
# data size. FLAC: STREAMINFO's block sizes, frame sizes, and rate/channels/bits/total samples (packed).
_HEADER_FIELDS = {".wav": [4, 20, 22, 24, 28, 32, 34, 40], ".flac": [8, 10, 12, 15, 18, 19, 20, 21, 22]}


@st.composite
def mutated_audio(draw) -> tuple[str, bytes]:
    """A valid file with a few random byte flips, overwritten header fields, insertions, deletions or a cut."""
    name = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[name])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "field", "insert", "delete", "truncate"]))
        # Most of the interesting damage is in the header: favour its fields, and the first 64 bytes.
        end = draw(st.sampled_from([min(64, len(data)), len(data)]))
        field = st.sampled_from(_HEADER_FIELDS[name[name.rindex(".") :]])
        pos = min(draw(field | st.integers(0, max(0, end - 1))), max(0, len(data) - 1))  # earlier cuts shorten it
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "field":  # a 16- or 32-bit little-endian field set to an extreme or random value
            size = draw(st.sampled_from([2, 4]))
            value = draw(st.one_of(st.sampled_from([0, 1, 2**(8 * size) - 1, 2**(8 * size - 1)]),
                                   st.integers(0, 2**(8 * size) - 1)))
            data[pos : pos + size] = struct.pack("<H" if size == 2 else "<I", value)
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return name, bytes(data)


def _check_audio(audio, path) -> None:
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.ndim == 1, (type(audio), audio)
    assert np.all(np.isfinite(audio)), f"{path}: non-finite samples returned"


def _names_file(error: InputError, path) -> bool:
    return str(path) in str(error) and "\n" not in str(error)


@fuzz_settings(150)
@given(case=mutated_audio())
def test_audio_loaders_return_finite_audio_or_input_error(case, tmp_path_factory):
    name, data = case
    path = tmp_path_factory.getbasetemp() / f"fuzz-{name}"
    path.write_bytes(data)
    try:
        audio = load_audio(path)
    except InputError as e:
        assert _names_file(e, path), str(e)
    else:
        _check_audio(audio, path)
        assert len(audio) > 0
    try:
        duration = audio_duration(path)
    except InputError as e:
        assert _names_file(e, path), str(e)
    else:
        assert isinstance(duration, float) and math.isfinite(duration) and duration >= 0
    try:
        for block in read_blocks(path, block_seconds=0.02):
            _check_audio(block, path)
    except InputError as e:
        assert _names_file(e, path), str(e)


# --- manifests --------------------------------------------------------------------------------------

_KEYS = ["id", "audio", "audio_filepath", "duration", "text", "speaker"]
_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-10**400, 10**400),
                          st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                          st.sampled_from(["a.wav", "/abs/b.flac", "", "nan", "Infinity", "-1", "1e999", "2.5"]))
_JSON = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)


def _json_line(row) -> str:
    try:
        return json.dumps(row, ensure_ascii=False)
    except ValueError:  # an integer too long for str(): the JSON encoder cannot write it either
        return "{}"


@st.composite
def manifest_lines(draw) -> bytes:
    """Lines of a JSONL manifest: good rows, rows with wrong types or missing fields, repeated ids,
    broken JSON, raw bytes (possibly not UTF-8), unusual line breaks."""
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["good", "one-bad-field", "row", "any", "broken", "bytes", "repeat"]))
        if kind in ("good", "one-bad-field"):
            row = {"id": draw(st.sampled_from(["u1", "u2", "u3"])), "audio": draw(st.text(min_size=1, max_size=10)),
                   "duration": draw(st.floats(0.01, 100)), "text": draw(st.text(max_size=20))}
            if kind == "one-bad-field":
                row[draw(st.sampled_from(_KEYS))] = draw(_JSON)
            line = _json_line(row).encode("utf-8", "surrogatepass")
        elif kind == "row":  # the known fields with any values, some missing
            keys = draw(st.lists(st.sampled_from(_KEYS), unique=True, max_size=len(_KEYS)))
            line = _json_line({k: draw(_JSON) for k in keys}).encode("utf-8", "surrogatepass")
        elif kind == "any":
            line = _json_line(draw(_JSON)).encode("utf-8", "surrogatepass")
        elif kind == "broken":
            good = _json_line({"audio": "a.wav", "duration": 1.0, "text": "hi"})
            cut = draw(st.integers(0, len(good)))
            line = (good[:cut] + draw(st.text(max_size=5)) + good[cut + 1 :]).encode("utf-8", "surrogatepass")
        elif kind == "bytes":
            line = draw(st.binary(max_size=30))
        else:
            line = lines[-1] if lines else b""
        lines.append(line)
    sep = draw(st.sampled_from([b"\n", b"\r\n", "\u2028".encode(), b"\x85"]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    return bom + sep.join(lines)


@fuzz_settings(200)
@given(data=manifest_lines())
def test_read_manifest_returns_usable_rows_and_problems_or_input_error(data, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz.jsonl"
    path.write_bytes(data)
    try:
        utts, problems = read_manifest(path)
    except InputError as e:
        assert _names_file(e, path), str(e)
        return
    assert len({u.id for u in utts}) == len(utts)
    for u in utts:
        assert isinstance(u.id, str) and isinstance(u.text, str) and isinstance(u.audio, str)
        assert os.path.isabs(u.audio) and "\0" not in u.audio
        assert isinstance(u.duration, float) and math.isfinite(u.duration) and u.duration > 0
        assert u.speaker is None or isinstance(u.speaker, str)
        for s in (u.id, u.text, u.audio, u.speaker or ""):
            s.encode("utf-8")  # writable to any output file
    for p in problems:
        assert p.startswith(f"{path}:") and "\n" not in p, p


_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)


@fuzz_settings(100)
@given(rows=st.lists(st.tuples(_TEXT.filter(lambda s: s.strip() == s and s != ""), _TEXT,
                               st.integers(1, 10**7), st.none() | _TEXT), max_size=5,
                     unique_by=lambda r: r[0]))
def test_write_manifest_then_read_manifest_round_trips(rows, tmp_path_factory):
    folder = tmp_path_factory.getbasetemp()
    utts = [Utterance(uid, str(folder / f"{i}.wav"), ms / 1000, text, speaker)
            for i, (uid, text, ms, speaker) in enumerate(rows)]
    write_manifest(folder / "round-trip.jsonl", utts)
    got, problems = read_manifest(folder / "round-trip.jsonl")
    assert problems == []
    assert got == utts


@pytest.mark.parametrize(("row", "problem"), [
    ('{"audio": "a.wav", "duration": 1%s}' % ("0" * 400), "duration 1000"),  # float() overflows
    ('{"audio": "a.wav", "duration": true}', "missing or invalid duration True"),
    ('{"audio": "a.wav", "duration": 1, "text": "\\ud800"}', "'text' holds a lone surrogate"),
    ('{"audio": "a\\u0000.wav", "duration": 1}', "NUL character"),
    ('{"audio": "a.wav", "duration": 1, "id": {"x": 1}}', "'id' is not a string or number"),
])
def test_read_manifest_reports_hostile_rows(tmp_path, row, problem):
    path = tmp_path / "m.jsonl"
    path.write_text(row + "\n")
    utts, problems = read_manifest(path)
    assert utts == [] and len(problems) == 1 and problem in problems[0], problems


def test_read_manifest_keeps_unicode_line_separators_inside_strings(tmp_path):
    """write_manifest writes U+2028 and U+0085 unescaped; only newlines end a line."""
    utts = [Utterance("u", str(tmp_path / "a.wav"), 1.0, "one\u2028two\x85three")]
    write_manifest(tmp_path / "m.jsonl", utts)
    assert read_manifest(tmp_path / "m.jsonl") == (utts, [])


def test_read_manifest_unreadable_is_input_error(tmp_path, monkeypatch):
    path = tmp_path / "m.jsonl"
    path.write_text("{}\n")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(path), "read_bytes", denied)  # chmod 0 would not stop root
    with pytest.raises(InputError, match="cannot read the manifest"):
        read_manifest(path)


# --- text -------------------------------------------------------------------------------------------

_REMOVED = set(".,!?;:\"()[]{}\u201c\u201d\u201e\u201a\u00ab\u00bb\u2039\u203a\u2026\u00bf\u00a1"
               "-\u2010\u2011\u2012\u2013\u2014\u2015/_")
_APOSTROPHE_VARIANTS = set("\u2019\u2018`\u00b4")


@fuzz_settings(1000)
@given(text=st.text(st.characters(exclude_categories=()), max_size=30))
def test_normalize_text_is_idempotent_and_keeps_only_what_it_documents(text):
    out = normalize_text(text)
    assert normalize_text(out) == out
    assert out == out.strip() and "  " not in out
    for c in out:
        assert c == " " or not c.isspace(), repr(c)  # whitespace collapsed to single spaces
        assert c.lower() == c, repr(c)  # lower-case
        assert not unicodedata.combining(c), repr(c)  # accents stripped
        assert c not in _REMOVED and c not in _APOSTROPHE_VARIANTS, repr(c)  # punctuation gone, one apostrophe
        assert unicodedata.category(c) not in ("Cc", "Cf", "Cs"), repr(c)  # no invisible or unwritable characters


@pytest.mark.parametrize(("text", "expected"), [
    ("\u0130stanbul", "istanbul"),  # I with dot above: lower() alone would leave a combining dot
    ("\u210cello", "hello"),  # black-letter H: NFKD makes it an upper-case H
    ("zero\u200bwidth\ufeff", "zerowidth"),
    ("tab\there\x00", "tab here"),
    ("line\u2028break", "line break"),
    ("lone\ud800surrogate", "lonesurrogate"),
])
def test_normalize_text_examples(text, expected):
    assert normalize_text(text) == expected
