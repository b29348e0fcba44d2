"""The AN4 recipe's helper scripts: perturbed test conditions, simulated rooms, the name lists of its LM, and
n-best combination of models."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.data import read_manifest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "an4"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"an4_recipe_{name}", RECIPE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # where dataclasses look up a module's annotations
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
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    soundfile.write(rooms / "r.wav", np.array([0, 1.0, 0, 0.5], dtype=np.float32), 16000, subtype="FLOAT")
    argv = ["perturb.py", "--manifest", str(manifest), "--babble", str(manifest), "--rirs", str(rooms),
            "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    perturb.main()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["speed-0.9", "speed-1.1", "white-20db", "white-10db", "telephone", "8bit", "babble-10db",
                            "reverb"])
    for name in names:
        utts, problems = read_manifest(out / name / "manifest.jsonl")
        assert not problems
        assert [(u.id, u.text) for u in utts] == [("u0", "WORD 0"), ("u1", "WORD 1")]
        expected = {"speed-0.9": 1.5 / 0.9, "speed-1.1": 1.5 / 1.1}.get(name, 1.5)
        assert all(abs(u.duration - expected) < 0.01 for u in utts), name
        assert all(soundfile.info(u.audio).samplerate == 16000 for u in utts)


def test_simulated_rooms_have_the_asked_reverberation_and_are_seeded(tmp_path, monkeypatch):
    pytest.importorskip("pyroomacoustics", reason="recipes/an4/make_rirs.py needs pip install -e '.[recipes]'")
    import pyroomacoustics as pra

    make_rirs = _script("make_rirs")
    for seed, folder in ((0, "a"), (0, "b"), (1, "c")):
        monkeypatch.setattr(sys, "argv", ["make_rirs.py", "--out", str(tmp_path / folder), "--count", "3",
                                          "--rt60", "0.3,0.6", "--distance", "1,2", "--seed", str(seed)])
        make_rirs.main()
    rooms = [json.loads(line) for line in (tmp_path / "a" / "rooms.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rooms] == ["rir-0000.wav", "rir-0001.wav", "rir-0002.wav"]
    for r in rooms:
        assert 0.3 <= r["rt60"] <= 0.6 and 1 <= r["distance"] <= 2
        assert all(0.5 <= x <= side - 0.5 for x, side in zip(r["talker"][:2] + r["mic"][:2], r["room"][:2] * 2,
                                                             strict=True))
        rir, rate = soundfile.read(tmp_path / "a" / r["file"])
        assert rate == 16000 and rir.ndim == 1
        # The direct sound arrives after the talker-microphone distance at the speed of sound (plus half the
        # simulator's fractional-delay filter), and the tail decays at about the asked rate (Sabine's formula
        # is an approximation in a shoebox).
        direct = r["distance"] / pra.constants.get("c") * 16000 + pra.constants.get("frac_delay_length") // 2
        assert abs(int(np.argmax(np.abs(rir))) - direct) <= 2
        assert 0.5 * r["rt60"] < pra.experimental.measure_rt60(rir, fs=16000, decay_db=20) < 2 * r["rt60"]
    def samples(folder):  # not the files' bytes: libsndfile stamps float WAVs with the time of writing
        return [soundfile.read(tmp_path / folder / r["file"])[0] for r in rooms]

    assert all(np.array_equal(a, b) for a, b in zip(samples("a"), samples("b"), strict=True))
    assert not any(len(a) == len(c) and np.array_equal(a, c) for a, c in zip(samples("a"), samples("c"), strict=True))
    with pytest.raises(ValueError, match="no room"):
        make_rirs.draw_room(np.random.default_rng(0), (0.3, 0.6), (20.0, 30.0), tries=50)


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


def test_a_transcripts_ctc_score_sums_over_all_its_alignments():
    import itertools

    import torch

    combine = _script("combine_nbest")
    log_probs = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).log_softmax(-1)  # T=4, blank=0

    def collapse(path):
        merged = [s for i, s in enumerate(path) if i == 0 or s != path[i - 1]]
        return [s for s in merged if s != 0]

    for tokens in ([1], [1, 2], [1, 1], [2, 1, 2]):
        paths = [p for p in itertools.product(range(3), repeat=4) if collapse(p) == tokens]
        brute = torch.logsumexp(torch.stack([sum(log_probs[t, s] for t, s in enumerate(p)) for p in paths]), 0)
        assert abs(combine.ctc_log_likelihood(log_probs, tokens) - float(brute)) < 1e-4, tokens
    assert combine.ctc_log_likelihood(log_probs, [1, 1, 1]) == float("-inf")  # needs 5 frames
    assert abs(combine.ctc_log_likelihood(log_probs, []) - float(log_probs[:, 0].sum())) < 1e-5  # all blank


def test_rescoring_weighs_each_model_and_the_lm():
    combine = _script("combine_nbest")
    a = combine.Candidate("a", ctc=[-1.0, -9.0], lm=-2.0, words=1)
    b = combine.Candidate("b c", ctc=[-2.0, -3.0], lm=-1.0, words=2)
    utts = [[a, b], []]
    assert combine.rescore(utts, [1.0, 0.0], 0.0, 0.0) == ["a", ""]  # the first model alone
    assert combine.rescore(utts, [0.5, 0.5], 0.0, 0.0) == ["b c", ""]  # the mean: -5 against -2.5
    assert combine.rescore(utts, [1.0, 0.0], 2.0, 0.0) == ["b c", ""]  # -5 against -4: the LM decides
    assert combine.rescore(utts, [1.0, 0.0], 2.0, -2.0) == ["a", ""]  # and the word score back
    impossible = combine.Candidate("d", ctc=[-0.5, float("-inf")], lm=-2.0, words=1)
    assert combine.rescore([[a, impossible]], [1.0, 0.0], 0.0, 0.0) == ["d"]  # a model weighted 0 has no say
    assert combine.rescore([[a, impossible]], [0.5, 0.5], 0.0, 0.0) == ["a"]


def test_combining_needs_tuned_beam_settings_and_reports_the_grid(tmp_path, tiny_checkpoint, capsys):
    from asr.decoding import BeamOptions
    from asr.lm import build_arpa
    from asr.tuning import save_settings

    combine = _script("combine_nbest")
    rows = []
    for i, hz in enumerate((300, 600)):
        soundfile.write(tmp_path / f"u{i}.wav", _tone(1.0, hz), 16000)
        rows.append({"id": f"u{i}", "audio": f"u{i}.wav", "duration": 1.0, "text": "A B" if i else "C"})
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["--manifest", str(manifest), "--lm-weights", "0,1", "--word-scores", "0"]

    assert combine.main([*argv, str(tiny_checkpoint)]) == 1
    assert "no tuned beam search with an LM stored" in capsys.readouterr().err

    build_arpa(["a b", "c", "a c"], 2, tmp_path / "lm.arpa")
    tuned = tmp_path / "tuned.pt"
    save_settings(tiny_checkpoint, tuned, BeamOptions(lm=str(tmp_path / "lm.arpa"), beam_size=8), {})
    token_lm = tmp_path / "token-lm.pt"
    save_settings(tiny_checkpoint, token_lm, BeamOptions(lm=str(tmp_path / "lm.arpa"), lexicon_free=True), {})
    assert combine.main([*argv, str(token_lm)]) == 1
    assert "rescoring needs a word LM" in capsys.readouterr().err
    assert combine.main([*argv, str(tuned), str(tuned)]) == 0
    out = capsys.readouterr().out
    assert out.count("1-best WER") == 2
    assert "2 utterances" in out and "oracle WER" in out
    assert "best, first alone: WER" in out and "best, mean of all: WER" in out
