import math

import pytest
import torch

from asr.audio import FeatureExtractor
from asr.data import Utterance
from asr.decoding import BeamOptions
from asr.lm import build_arpa
from asr.model import Model, preset_config, read_checkpoint, save_checkpoint
from asr.text import BLANK, CharTokenizer
from asr.transcribe import Transcriber
from asr.tuning import best_row, decode_texts, grid, save_settings, tune


def test_grid_forms():
    assert grid("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert grid("-1:1:1") == [-1.0, 0.0, 1.0]
    assert grid("0.5, 2") == [0.5, 2.0]
    for bad in ["1:0:0.5", "0:1:0", "a,b", "0:1"]:
        with pytest.raises(ValueError, match="not a list of numbers"):
            grid(bad)


def test_best_row_prefers_lower_wer_then_milder_settings():
    rows = [{"lm_weight": 1.0, "word_score": 1.0, "wer": 0.1, "cer": 0.05},
            {"lm_weight": 0.5, "word_score": -1.0, "wer": 0.1, "cer": 0.05},
            {"lm_weight": 0.5, "word_score": 0.0, "wer": 0.1, "cer": 0.05},
            {"lm_weight": 2.0, "word_score": 0.0, "wer": 0.2, "cer": 0.01}]
    assert best_row(rows) == rows[2]


def _utterance(tok, word: str, vowel_probs: dict[str, float]) -> torch.Tensor:
    """(T, V) emissions of `word` whose second letter is uncertain between `vowel_probs`' letters."""
    lp = torch.full((2 * len(word) + 1, tok.vocab_size), -12.0)
    lp[:, BLANK] = -0.01
    for i, c in enumerate(word):
        lp[2 * i + 1, BLANK] = -8.0
        lp[2 * i + 1, tok.encode(c)[0]] = -0.01
    lp[3, tok.encode(word[1])[0]] = -12.0
    for c, p in vowel_probs.items():
        lp[3, tok.encode(c)[0]] = math.log(p)
    return lp.log_softmax(-1)


def test_tune_finds_the_weight_that_fixes_acoustic_confusions(tmp_path):
    tok = CharTokenizer()
    lm = tmp_path / "lm.arpa"
    build_arpa(["cat", "cat", "cat", "mat", "hat", "cut"], 2, lm)
    emissions = [(Utterance(f"u{i}", "-", 1.0, "cat"), _utterance(tok, "cat", {"a": 0.4, "u": 0.6})) for i in range(3)]
    emissions.append((Utterance("u3", "-", 1.0, "cut"), _utterance(tok, "cut", {"a": 0.1, "u": 0.9})))
    rows = tune(emissions, tok, BeamOptions(beam_size=8, lm=str(lm)), [0.0, 3.0], [0.0])
    assert [r["wer"] for r in rows] == [0.75, 0.0]
    assert best_row(rows)["lm_weight"] == 3.0
    texts = decode_texts([lp for _, lp in emissions], tok, BeamOptions(beam_size=8, lm=str(lm), lm_weight=3.0),
                         batch_size=3)
    assert texts == ["cat", "cat", "cat", "cut"]


def test_saved_settings_travel_with_the_model_folder(tmp_path):
    tok = CharTokenizer()
    src = tmp_path / "src.pt"
    save_checkpoint(src, Model(preset_config("tiny", tok.vocab_size)), tok, FeatureExtractor(), {"dev_wer": 0.5})
    folder = tmp_path / "release"
    folder.mkdir()
    build_arpa(["a b c"], 2, folder / "lm.arpa")
    options = BeamOptions(beam_size=7, lm=str(folder / "lm.arpa"), lm_weight=0.75, word_score=-0.5)
    settings = save_settings(src, folder / "model.pt", options, {"wer": 0.1})
    assert settings["lm"] == "lm.arpa" and settings["decoder"] == "beam"
    metadata = read_checkpoint(folder / "model.pt")["metadata"]
    assert metadata["dev_wer"] == 0.5 and metadata["decoder"] == settings and metadata["decoder_tuning"] == {"wer": 0.1}

    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    t = Transcriber.load(moved / "model.pt")
    options = t.decode.keywords["options"]
    assert (options.lm, options.lm_weight, options.word_score, options.beam_size) == \
        (str(moved / "lm.arpa"), 0.75, -0.5, 7)
    assert Transcriber.load(moved / "model.pt", decoder={"lm_weight": 2.0}).decode.keywords["options"].lm_weight == 2.0
    assert Transcriber.load(moved / "model.pt", decoder={"decoder": "greedy"}).decoder_settings["decoder"] == "greedy"
