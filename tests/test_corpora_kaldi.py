"""Kaldi data directories, LibriSpeech in other audio formats, and the dev split every `asr prepare` has."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.corpora import librispeech_genders, scan_librispeech, speakers_by_regex
from asr.data import read_manifest
from asr.errors import InputError
from asr.kaldi import scan_kaldi

REPO = Path(__file__).resolve().parents[1]


def _tone(path: Path, seconds: float, rate: int = 16_000, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(rate * seconds)) / rate
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format=fmt)
    return path


def _lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


@pytest.fixture()
def kaldi(tmp_path) -> Path:
    """speechocean762's layout: paths in wav.scp relative to the folder above the data directory."""
    root = tmp_path / "corpus"
    for spk in ("0001", "0002", "0003", "0004"):
        for k in range(3):
            _tone(root / "WAVE" / f"SPEAKER{spk}" / f"{spk}{k}.ogg", 0.5 + 0.1 * k, fmt="OGG")
    utts = [(f"{spk}{k}", spk) for spk in ("0001", "0002", "0003", "0004") for k in range(3)]
    _lines(root / "train" / "wav.scp", [f"{u} WAVE/SPEAKER{s}/{u}.ogg" for u, s in utts])
    _lines(root / "train" / "text", [f"{u}\tWE CALL IT BEAR {u}" for u, _ in utts])
    _lines(root / "train" / "utt2spk", [f"{u} {s}" for u, s in utts])
    _lines(root / "train" / "spk2gender", ["0001 m", "0002 f", "0003 m", "0004 f"])
    return root


def test_scan_kaldi(kaldi):
    utts, genders, problems = scan_kaldi(kaldi / "train", root=kaldi)
    assert problems == []
    assert len(utts) == 12 and utts[0].id == "00010" and utts[0].speaker == "0001"
    assert utts[0].text == "WE CALL IT BEAR 00010"  # tab-separated text as speechocean762 writes it
    assert utts[2].duration == pytest.approx(0.7, abs=0.01)
    assert genders == {"0001": "m", "0002": "f", "0003": "m", "0004": "f"}


def test_scan_kaldi_relative_paths_need_the_right_root(kaldi, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Kaldi's default: relative to the current folder, where they are not
    with pytest.raises(InputError, match="relative paths are resolved against --root"):
        scan_kaldi(kaldi / "train")


def test_scan_kaldi_refuses_piped_commands_and_archives(kaldi):
    scp = kaldi / "train" / "wav.scp"
    lines = scp.read_text().splitlines()
    scp.write_text("\n".join([lines[0], "00011 sox WAVE/x.flac -t wav - |", *lines[2:]]) + "\n")
    with pytest.raises(InputError, match=r"wav.scp:2: 00011 is a piped command") as e:
        scan_kaldi(kaldi / "train", root=kaldi)
    assert "\n" not in str(e.value)
    scp.write_text("\n".join([lines[0], "00011 raw.ark:1234", *lines[2:]]) + "\n")
    with pytest.raises(InputError, match="offset into a Kaldi archive"):
        scan_kaldi(kaldi / "train", root=kaldi)


def test_scan_kaldi_skips_and_reports_what_it_cannot_use(kaldi):
    (kaldi / "WAVE" / "SPEAKER0002" / "00020.ogg").unlink()
    _lines(kaldi / "train" / "utt2spk", [line for line in (kaldi / "train" / "utt2spk").read_text().splitlines()
                                        if not line.startswith("00030")])
    utts, _, problems = scan_kaldi(kaldi / "train", root=kaldi)
    assert len(utts) == 10
    assert any("00020" in p and "no audio file" in p for p in problems)
    assert any("no speaker for 00030" in p for p in problems)


def test_scan_kaldi_segments_are_cut_from_recordings(tmp_path):
    rec = _tone(tmp_path / "long.wav", 3.0)
    data = tmp_path / "data"
    _lines(data / "wav.scp", [f"rec1 {rec}"])
    _lines(data / "segments", ["a rec1 0.00 1.25", "b rec1 1.25 3.00"])
    _lines(data / "text", ["a HELLO", "b WORLD"])
    _lines(data / "utt2spk", ["a s1", "b s1"])
    utts, _, problems = scan_kaldi(data, segments_dir=tmp_path / "cut")
    assert problems == []
    assert [(u.id, u.text) for u in utts] == [("a", "HELLO"), ("b", "WORLD")]
    assert [u.duration for u in utts] == pytest.approx([1.25, 1.75], abs=1e-3)
    whole, _ = soundfile.read(str(rec), dtype="float32")
    cut, _ = soundfile.read(utts[1].audio, dtype="float32")
    np.testing.assert_allclose(cut, whole[20_000:], atol=1e-4)  # 16-bit FLAC of the same samples


def test_scan_librispeech_other_audio_extensions(tmp_path):
    chapter = tmp_path / "LibriSpeech" / "train-clean-5" / "1088" / "134315"
    _tone(chapter / "1088-134315-0000.opus", 1.0, fmt="OGG")
    _tone(chapter / "1088-134315-0001.flac", 0.5)
    _lines(chapter / "1088-134315.trans.txt", ["1088-134315-0000 AND MISTER JOHN", "1088-134315-0001 DASHWOOD"])
    (tmp_path / "LibriSpeech" / "SPEAKERS.TXT").write_text(";ID  |SEX| SUBSET | MINUTES | NAME\n"
                                                            "1088 | F | train-clean-5 | 25.0 | A Reader\n")
    utts = scan_librispeech(tmp_path)["train-clean-5"]
    assert [Path(u.audio).suffix for u in utts] == [".opus", ".flac"]
    assert librispeech_genders(tmp_path) == {"1088": "f"}


def test_scan_librispeech_real_opus(shared_data):
    root = shared_data / "librispeech-mini"
    if not root.is_dir():
        pytest.skip(f"mini LibriSpeech not found at {root}")
    utts = scan_librispeech(root)["train-clean-5"]
    assert len(utts) == 1519 and {Path(u.audio).suffix for u in utts} == {".opus"}
    assert len({u.speaker for u in utts}) == 28
    assert 5.2 < sum(u.duration for u in utts) / 3600 < 5.4


def test_speakers_by_regex(tmp_path):
    from asr.data import Utterance

    utts = [Utterance("anna_001", "a.wav", 1.0), Utterance("ben_002", "b.wav", 1.0)]
    assert [u.speaker for u in speakers_by_regex(utts, r"^([a-z]+)_")] == ["anna", "ben"]
    assert [u.speaker for u in speakers_by_regex(utts, r"^[a-z]+")] == ["anna", "ben"]
    with pytest.raises(InputError, match="does not match 1 of 2 ids"):
        speakers_by_regex(utts, r"^anna")
    with pytest.raises(InputError, match="not a valid regular expression"):
        speakers_by_regex(utts, r"(")


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "asr", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_prepare_kaldi_with_a_dev_split_by_speaker_and_gender(kaldi, tmp_path):
    out = tmp_path / "m" / "so.jsonl"
    proc = _run("prepare", "kaldi", "--data-dir", kaldi / "train", "--root", kaldi, "--out", out,
                "--dev-fraction", "0.5")
    assert proc.returncode == 0, proc.stderr
    train, _ = read_manifest(out)
    dev, _ = read_manifest(tmp_path / "m" / "so-dev.jsonl")
    assert len(train) == len(dev) == 6
    assert not {u.speaker for u in train} & {u.speaker for u in dev}
    genders = {"0001": "m", "0002": "f", "0003": "m", "0004": "f"}
    assert sorted(genders[u.speaker] for u in dev[::3]) == ["f", "m"]  # one speaker of each
    assert proc.stdout.splitlines()[0] == f"{out}: 6 utterances, 2 speakers, 0.1 min"


def test_prepare_kaldi_piped_command_is_one_line(kaldi, tmp_path):
    _lines(kaldi / "train" / "wav.scp", ["00010 flac -c -d -s x.flac |"])
    proc = _run("prepare", "kaldi", "--data-dir", kaldi / "train", "--out", tmp_path / "m.jsonl")
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "piped command" in proc.stderr


def test_prepare_folder_dev_split_by_regex_and_by_file(tmp_path):
    root = tmp_path / "rec"
    for name in ("anna_1", "anna_2", "ben_1", "ben_2", "cara_1", "cara_2"):
        _tone(root / f"{name}.wav", 0.5)
        (root / f"{name}.txt").write_text("hello there")
    out = tmp_path / "mine.jsonl"
    proc = _run("prepare", "folder", "--root", root, "--out", out, "--speaker-regex", "^([a-z]+)_",
                "--dev-fraction", "0.3", "--dev-out", tmp_path / "held.jsonl")
    assert proc.returncode == 0, proc.stderr
    dev = [json.loads(line) for line in (tmp_path / "held.jsonl").read_text().splitlines()]
    assert len(dev) == 2 and len({u["speaker"] for u in dev}) == 1
    proc = _run("prepare", "folder", "--root", root, "--out", out, "--dev-fraction", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "mine-dev.jsonl").read_text().splitlines()) == 3  # by file: no speakers known


def test_prepare_table_dev_split_by_speaker_column(tmp_path):
    rows = ["path,text,speaker"]
    for k in range(8):
        _tone(tmp_path / f"c{k}.wav", 0.4)
        rows.append(f"c{k}.wav,some words,s{k % 4}")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    proc = _run("prepare", "table", tmp_path / "t.csv", "--out", tmp_path / "o.jsonl", "--dev-fraction", "0.25")
    assert proc.returncode == 0, proc.stderr
    dev, _ = read_manifest(tmp_path / "o-dev.jsonl")
    train, _ = read_manifest(tmp_path / "o.jsonl")
    assert len(dev) == 2 and len({u.speaker for u in dev}) == 1 and len(train) == 6
    proc = _run("prepare", "table", tmp_path / "t.csv", "--out", tmp_path / "o.jsonl", "--dev-fraction", "1.5")
    assert proc.returncode != 0 and "--dev-fraction must be" in proc.stderr
