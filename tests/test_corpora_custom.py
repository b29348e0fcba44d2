"""Your own data: `scan_folder` (audio + .txt transcripts), `read_table` (CSV/TSV/JSONL), and the commands."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.cli import main
from asr.corpora import read_table, scan_folder
from asr.data import read_manifest
from asr.errors import InputError

REPO = Path(__file__).resolve().parents[1]

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
           ".sph": ("NIST", "PCM_16")}


def _audio(path: Path, seconds: float, rate: int = 16_000, channels: int = 1, seed: int = 0) -> Path:
    """A quiet noise recording in the format its extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    wave = (0.1 * rng.standard_normal((round(seconds * rate), channels))).astype(np.float32)
    fmt, subtype = FORMATS[path.suffix.lower()]
    soundfile.write(str(path), wave, rate, format=fmt, subtype=subtype)
    return path


def _text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _warnings(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


# scan_folder -------------------------------------------------------------------------------------


@pytest.fixture()
def folder(tmp_path) -> Path:
    """Mixed formats, rates and channel counts in nested folders, plus every kind of file to skip."""
    root = tmp_path / "recordings"
    _audio(root / "anna" / "001.wav", 1.0, 16_000, 1, seed=1)
    _text(root / "anna" / "001.txt", "Hello world\n")
    _audio(root / "anna" / "002.flac", 2.0, 44_100, 2, seed=2)
    _text(root / "anna" / "002.txt", "\ufeffthe  quick\nbrown fox \n\n")  # BOM, two lines, extra spaces
    _audio(root / "ben" / "session 1" / "003.ogg", 1.5, 22_050, 1, seed=3)
    _text(root / "ben" / "session 1" / "003.txt", "  café au lait  ")
    _audio(root / "ben" / "004.sph", 1.25, 8_000, 1, seed=4)
    _text(root / "ben" / "004.txt", "NIST sphere")
    _audio(root / "top.WAV", 1.0, 16_000, 1, seed=5)  # upper-case extension, directly under root
    _text(root / "top.txt", "at the top")
    # Skipped:
    _audio(root / "anna" / "005.wav", 0.5)  # no transcript
    _audio(root / "ben" / "006.flac", 0.5)
    _text(root / "ben" / "006.txt", "  \n \n")  # empty transcript
    _text(root / "ben" / "007.wav", "this is not audio\n")  # audio extension, not audio
    _text(root / "ben" / "007.txt", "never used")
    _audio(root / "ben" / "008.wav", 0.5)
    _text(root / "ben" / "008.txt", "caf\xe9", encoding="latin-1")  # not UTF-8
    _audio(root / "anna" / "001.flac", 1.5, seed=6)  # same name as anna/001.wav
    # Ignored: not audio by extension.
    _text(root / "README.txt", "about these recordings")
    _text(root / "notes.md", "# notes")
    return root


def test_scan_folder_mixed_formats(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="asr"):
        utts, skipped = scan_folder(folder)

    assert [u.id for u in utts] == ["anna/001", "anna/002", "ben/004", "ben/session 1/003", "top"]
    by_id = {u.id: u for u in utts}
    assert by_id["anna/001"].text == "Hello world"
    assert by_id["anna/002"].text == "the quick brown fox"  # BOM dropped, lines joined, spaces collapsed
    assert by_id["ben/session 1/003"].text == "café au lait"
    assert [by_id[i].duration for i in ["anna/001", "anna/002", "ben/session 1/003", "ben/004", "top"]] == \
        pytest.approx([1.5, 2.0, 1.5, 1.25, 1.0], abs=1e-3)
    assert all(u.speaker is None for u in utts)
    for u in utts:
        assert Path(u.audio).is_absolute() and Path(u.audio).is_file()
        assert Path(u.audio).relative_to(folder.resolve()).with_suffix("").as_posix() == u.id

    assert skipped == {"no transcript": ["anna/005.wav"], "empty transcript": ["ben/006.flac"],
                       "transcript not UTF-8": ["ben/008.wav"], "same name": ["anna/001.wav"],
                       "unreadable audio": ["ben/007.wav"]}
    # anna/001.flac sorts before anna/001.wav, so the flac is the one kept.
    assert Path(by_id["anna/001"].audio).suffix == ".flac"
    warnings = _warnings(caplog)
    for name in ["anna/005.wav", "ben/006.flac", "ben/008.wav", "ben/007.wav", "anna/001.wav"]:
        assert name in warnings
    assert "1 audio files have no .txt transcript" in warnings


def test_scan_folder_speaker_from_dir(folder):
    utts, _ = scan_folder(folder, speaker_from="dir")
    assert {u.id: u.speaker for u in utts} == {"anna/001": "anna", "anna/002": "anna", "ben/004": "ben",
                                               "ben/session 1/003": "session 1", "top": "recordings"}


def test_scan_folder_names_a_few_of_many_skipped(tmp_path, caplog):
    for i in range(8):
        _audio(tmp_path / f"u{i}.wav", 0.2)
    _text(tmp_path / "u0.txt", "kept")
    with caplog.at_level(logging.WARNING, logger="asr"):
        utts, skipped = scan_folder(tmp_path)
    assert [u.id for u in utts] == ["u0"]
    assert len(skipped["no transcript"]) == 7
    warning = _warnings(caplog)
    assert "7 audio files have no .txt transcript" in warning
    assert "u1.wav, u2.wav, u3.wav, u4.wav, u5.wav ..." in warning and "u6.wav" not in warning


def test_scan_folder_errors(tmp_path):
    with pytest.raises(InputError, match="absent: no such directory"):
        scan_folder(tmp_path / "absent")
    _text(tmp_path / "a.txt", "text without audio")
    with pytest.raises(InputError, match="no audio files"):
        scan_folder(tmp_path)
    _audio(tmp_path / "b.wav", 0.2)
    with pytest.raises(InputError, match="none of the 1 audio files has a usable transcript"):
        scan_folder(tmp_path)
    with pytest.raises(ValueError):
        scan_folder(tmp_path, speaker_from="file")


# read_table --------------------------------------------------------------------------------------


@pytest.fixture()
def clips(tmp_path) -> Path:
    """tmp_path/clips/a.wav (1 s), b.flac (0.5 s, 44.1 kHz stereo), c.ogg (0.75 s), d.sph (0.25 s, 8 kHz)."""
    d = tmp_path / "clips"
    _audio(d / "a.wav", 1.0)
    _audio(d / "b.flac", 0.5, 44_100, 2)
    _audio(d / "c.ogg", 0.75, 22_050)
    _audio(d / "d.sph", 0.25, 8_000)
    _text(d / "bad.wav", "not audio")
    return d


def test_read_csv_with_auto_columns_and_bad_rows(tmp_path, clips, caplog):
    table = _text(tmp_path / "data.csv",
                  "\ufeffFile_Name,Transcription,Speaker,Duration\n"           # 1: BOM, any case
                  "clips/a.wav,\"hello, world\",s1,\n"                           # 2: quoted comma; no duration
                  "clips/b.flac,two  words,s2,9.5\n"                             # 3: the table's duration is used
                  "\n"                                                           # 4: blank
                  "clips/c.ogg,\"a quoted\nline break\",,nan\n"                  # 5-6: invalid duration: read
                  "clips/missing.wav,no file,s1,1.0\n"                           # 7
                  "clips/d.sph,,s1,\n"                                           # 8: empty text
                  "clips/d.sph,unquoted, comma,s1,\n"                            # 9: one field too many
                  "clips/bad.wav,unreadable,s1,\n"                               # 10
                  "clips/a.wav,same id again,s1,\n"                              # 11
                  f"{clips / 'd.sph'},absolute path,s3,\n")                      # 12
    with caplog.at_level(logging.WARNING, logger="asr"):
        utts, problems = read_table(table)

    assert [(u.id, u.text, u.speaker) for u in utts] == [
        ("clips/a", "hello, world", "s1"), ("clips/b", "two words", "s2"), ("clips/c", "a quoted line break", None),
        ((clips / "d").as_posix(), "absolute path", "s3")]
    assert [u.duration for u in utts] == pytest.approx([1.0, 9.5, 0.75, 0.25], abs=1e-3)
    assert [Path(u.audio) for u in utts] == [clips / "a.wav", clips / "b.flac", clips / "c.ogg", clips / "d.sph"]
    assert [p.split(": ", 1)[0] for p in problems] == [f"{table}:{n}" for n in (7, 8, 9, 10, 11)]
    assert "no such audio file" in problems[0] and "missing.wav" in problems[0]
    assert "empty transcript" in problems[1]
    assert "5 fields, the header has 4" in problems[2] and "quote" in problems[2]
    assert "cannot read audio" in problems[3] and "bad.wav" in problems[3]
    assert "duplicate id 'clips/a' (first on line 2)" in problems[4]
    warnings = _warnings(caplog)
    assert all(p in warnings for p in problems)


def test_read_tsv_common_voice_style(tmp_path, clips):
    # Common Voice: path relative to clips/, a client_id speaker, sentences with unbalanced quotes.
    table = _text(tmp_path / "cv" / "train.tsv",
                  "client_id\tpath\tsentence\tup_votes\n"
                  "abc\ta.wav\t\"Hello,\" he said.\t2\n"
                  "def\tb.flac\tShe said \"no\tand left\t1\n"                    # a tab too many
                  "def\tc.ogg\t\"Wholly quoted \"\"text\"\"\"\t0\n"
                  "ghi\td.sph\tit's 5 o'clock\t3\n")
    utts, problems = read_table(table, root=clips)
    assert [(u.id, u.text, u.speaker) for u in utts] == [("a", '"Hello," he said.', "abc"),
                                                         ("c", 'Wholly quoted "text"', "def"),
                                                         ("d", "it's 5 o'clock", "ghi")]
    assert problems == [f"{table}:3: 5 fields, the header has 4"]


@pytest.mark.parametrize("name, content", [
    ("semicolon.csv", "audio;text\nclips/a.wav;hello\n"),          # European Excel
    ("pipes.txt", "wav|sentence\nclips/a.wav|hello\n"),          # sniffed from the header
    ("tabs.list", "path\ttranscript\nclips/a.wav\thello\n"),
    ("manifest", '{"audio_filepath": "clips/a.wav", "text": "hello"}\n'),  # JSON by its content
])
def test_read_table_delimiters_are_sniffed(tmp_path, clips, name, content):
    utts, problems = read_table(_text(tmp_path / name, content))
    assert [(u.id, u.text) for u in utts] == [("clips/a", "hello")] and problems == []


def test_read_jsonl_nemo_manifest(tmp_path, clips):
    rows = [{"audio_filepath": str(clips / "a.wav"), "duration": 1.0, "text": "nemo one"},
            {"audio_filepath": "b.flac", "text": "no duration, read from the header", "speaker": 84},
            {"audio_filepath": "c.ogg", "duration": 0.75, "offset": 12.5, "text": "a segment"},
            {"audio_filepath": "d.sph", "duration": "0.25", "offset": 0, "text": "offset zero is fine"},
            {"audio_filepath": "a.wav", "text": None}]
    lines = [json.dumps(r) for r in rows]
    lines[2:2] = ["{not json", "[1, 2]", ""]
    table = _text(clips / "nemo.jsonl", "\n".join(lines) + "\n")
    utts, problems = read_table(table)
    assert [(u.id, u.speaker) for u in utts] == [((clips / "a").as_posix(), None), ("b", "84"), ("d", None)]
    assert [u.duration for u in utts] == pytest.approx([1.0, 0.5, 0.25], abs=1e-3)
    assert [p.split(": ", 1)[0] for p in problems] == [f"{table}:{n}" for n in (3, 4, 6, 8)]
    assert "invalid JSON" in problems[0] and "not a JSON object" in problems[1]
    assert "offset 12.5" in problems[2] and "no text in column 'text'" in problems[3]


def test_read_table_explicit_columns_and_ids(tmp_path, clips):
    table = _text(tmp_path / "t.csv", "utt,wav_path,words,who,text\nx1,clips/a.wav,hello,s1,ignored\n")
    utts, _ = read_table(table, audio_column="WAV_PATH", text_column="words", speaker_column="who", id_column="utt")
    assert [(u.id, u.text, u.speaker) for u in utts] == [("x1", "hello", "s1")]
    utts, _ = read_table(table, audio_column="wav_path")  # text found automatically; "utt" is no id column
    assert [(u.id, u.text, u.speaker) for u in utts] == [("clips/a", "ignored", None)]


def test_read_table_column_errors_list_the_columns(tmp_path, clips):
    table = _text(tmp_path / "t.csv", "recording,words\nclips/a.wav,hello\n")
    with pytest.raises(InputError) as e:
        read_table(table)
    message = str(e.value)
    assert "\n" not in message and str(table) in message
    assert "no audio column" in message and "audio_filepath" in message and "'recording', 'words'" in message
    assert "--audio-column" in message
    with pytest.raises(InputError, match="no text column .*'recording', 'words'.*--text-column"):
        read_table(table, audio_column="recording")
    with pytest.raises(InputError, match="no column 'speech' \\(--text-column\\); the columns are 'recording'"):
        read_table(table, audio_column="recording", text_column="speech")
    # A header-less table: the first row is taken as the header, and the message says so.
    with pytest.raises(InputError, match="first line"):
        read_table(_text(tmp_path / "nohead.csv", "clips/a.wav,hello\nclips/b.flac,there\n"))


def test_read_table_file_errors(tmp_path, clips):
    with pytest.raises(InputError, match="absent.csv: no such file"):
        read_table(tmp_path / "absent.csv")
    latin = _text(tmp_path / "latin.csv", "path,text\nclips/a.wav,caf\xe9\n", encoding="latin-1")
    with pytest.raises(InputError, match="latin.csv: not UTF-8 text") as e:
        read_table(latin)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="JSON array"):
        read_table(_text(tmp_path / "array.json", '[{"path": "clips/a.wav", "text": "hi"}]'))
    with pytest.raises(InputError, match="empty.csv: no rows"):
        read_table(_text(tmp_path / "empty.csv", ""))
    with pytest.raises(InputError, match="header.csv: no rows"):
        read_table(_text(tmp_path / "header.csv", "path,text\n"))
    with pytest.raises(InputError, match="nowhere: no such directory"):
        read_table(_text(tmp_path / "ok.csv", "path,text\na.wav,hi\n"), root=tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"no usable rows \(1 skipped; the first: .*gone.wav"):
        read_table(_text(tmp_path / "gone.csv", "path,text\ngone.wav,hi\n"))


def test_read_table_reports_ten_bad_rows_and_a_count(tmp_path, clips, caplog):
    lines = ["path,text", "clips/a.wav,kept"] + [f"clips/missing{i}.wav,lost" for i in range(14)]
    table = _text(tmp_path / "many.csv", "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="asr"):
        utts, problems = read_table(table)
    assert len(utts) == 1 and len(problems) == 14
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 11
    assert "missing9.wav" in messages[9] and messages[10] == f"... and 4 more unusable rows in {table}"


# The commands ------------------------------------------------------------------------------------


def _run(*args):
    return subprocess.run([sys.executable, "-m", "asr", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_prepare_folder_then_train(folder, tmp_path):
    manifest = tmp_path / "manifests" / "mine.jsonl"
    proc = _run("prepare", "folder", "--root", folder, "--out", manifest, "--speaker-from", "dir")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == f"{manifest}: 5 utterances, 4 speakers, 0.1 min, 5 audio files skipped " \
                                  "(see the warnings above)"
    assert "ben/006.flac" in proc.stderr and "ben/007.wav" in proc.stderr
    utts, problems = read_manifest(manifest)
    assert problems == [] and len(utts) == 5
    assert {Path(u.audio).suffix.lower() for u in utts} == {".wav", ".flac", ".ogg", ".sph"}

    proc = _run("train", "--train", manifest, "--preset", "tiny", "--epochs", "1", "--workers", "0",
                "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "best.pt").is_file()


def test_prepare_table_command(tmp_path, clips):
    table = _text(tmp_path / "data.tsv", "path\tsentence\nclips/a.wav\thello\nclips/nope.wav\tgone\n")
    out = tmp_path / "out.jsonl"
    proc = _run("prepare", "table", table, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{out}: 1 utterance, 0.0 min, 1 row skipped (see the warnings above)"
    assert f"{table}:3: no such audio file" in proc.stderr
    utts, _ = read_manifest(out)
    assert [(u.id, u.text, Path(u.audio)) for u in utts] == [("clips/a", "hello", clips / "a.wav")]



def test_prepare_commands_fail_with_one_line(tmp_path, clips, capsys):
    table = _text(tmp_path / "data.tsv", "path\tsentence\nclips/a.wav\thello\n")
    out = tmp_path / "out.jsonl"
    for args, must_name in [(["table", table, "--out", out, "--text-column", "words"], "'words'"),
                            (["table", table, "--out", table], "is the table being read"),
                            (["table", table, "--out", tmp_path], "is a folder"),
                            (["table", tmp_path / "absent.csv", "--out", out], "absent.csv: no such file"),
                            (["folder", "--root", tmp_path / "absent", "--out", out], "absent: no such directory"),
                            (["folder", "--root", clips, "--out", tmp_path], "is a folder")]:
        assert main(["prepare", *map(str, args)]) == 1, args
        errors = capsys.readouterr().err.splitlines()
        assert len(errors) == 1 and errors[0].startswith("error: ") and must_name in errors[0], (args, errors)
    assert not out.exists()


@pytest.mark.parametrize("command", ["folder", "table"])
def test_prepare_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main(["prepare", command, "--help"])
    assert e.value.code == 0 and "--out MANIFEST" in capsys.readouterr().out
