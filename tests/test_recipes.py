"""The AN4 recipe's helper scripts: perturbed test conditions and the name lists of its LM."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import soundfile

from asr.data import read_manifest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "an4"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, RECIPE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_noise_is_mixed_at_the_asked_snr():
    perturb = _script("perturb")
    speech, noise = _tone(1.0, 440), np.random.default_rng(0).standard_normal(16000)
    for snr in (20, 10, 0):
        mixed = perturb.with_noise(speech, noise, snr)
        added = mixed - speech
        measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added ** 2))
        assert abs(measured - snr) < 1e-6


def test_telephone_keeps_the_voice_band_only():
    perturb = _script("perturb")
    for hz, kept in ((1000, True), (100, False), (5000, False)):
        out = perturb.telephone(_tone(1.0, hz))
        assert len(out) == 16000
        ratio = np.sqrt(np.mean(out[2000:-2000] ** 2)) / np.sqrt(np.mean(_tone(1.0, hz) ** 2))
        assert ratio > 0.9 if kept else ratio < 0.05, (hz, ratio)


def test_every_condition_gets_a_manifest_with_the_same_transcripts(tmp_path, monkeypatch):
    perturb = _script("perturb")
    rows = []
    for i, hz in enumerate((300, 600)):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, _tone(1.5, hz), 16000)
        rows.append({"id": f"u{i}", "audio": str(path), "duration": 1.5, "text": f"WORD {i}"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    argv = ["perturb.py", "--manifest", str(manifest), "--babble", str(manifest), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    perturb.main()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["speed-0.9", "speed-1.1", "white-20db", "white-10db", "telephone", "8bit", "babble-10db"])
    for name in names:
        utts, problems = read_manifest(out / name / "manifest.jsonl")
        assert not problems
        assert [(u.id, u.text) for u in utts] == [("u0", "WORD 0"), ("u1", "WORD 1")]
        expected = {"speed-0.9": 1.5 / 0.9, "speed-1.1": 1.5 / 1.1}.get(name, 1.5)
        assert all(abs(u.duration - expected) < 0.01 for u in utts), name
        assert all(soundfile.info(u.audio).samplerate == 16000 for u in utts)


def test_name_lists_keep_one_of_each_spelling(tmp_path):
    make_names = _script("make_names")
    make_names.write_list(tmp_path / "n.txt", ["MARY JO", "SHARON", "MARYJO", "MARY-JO", "SHARON", "JO"])
    assert (tmp_path / "n.txt").read_text() == "MARY JO\nSHARON\nJO\n"


def test_committed_name_lists_are_what_make_names_writes():
    from asr.text import spell_out

    lists = {name: (RECIPE / "names" / name).read_text().splitlines()
             for name in ("first-names.txt", "surnames.txt", "places.txt")}
    assert len(lists["surnames.txt"]) == 10_000
    assert lists["surnames.txt"][:3] == ["SMITH", "JOHNSON", "WILLIAMS"]  # most common first
    assert lists["places.txt"] == sorted(lists["places.txt"])
    for names in lists.values():
        assert all(re.fullmatch(r"[A-Z][A-Z .'-]*", n) for n in names)
        assert len({spell_out(n) for n in names}) == len(names)
