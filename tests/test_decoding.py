from pathlib import Path

import pytest
import torch

from asr.decoding import beam_decode, greedy_decode
from asr.text import BPETokenizer, CharTokenizer


def _emissions(frames: list[int], vocab: int) -> torch.Tensor:
    """Log-probs (1, T, V) whose argmax path is `frames`."""
    lp = torch.full((1, len(frames), vocab), -10.0)
    for t, k in enumerate(frames):
        lp[0, t, k] = -0.01
    return lp.log_softmax(-1)


def test_greedy_merges_repeats_and_drops_blanks():
    tok = CharTokenizer()
    a, b, sp = tok.encode("a")[0], tok.encode("b")[0], tok.tokens.index(" ")
    path = [0, a, a, 0, a, sp, b, b, 0]
    hyp = greedy_decode(_emissions(path, tok.vocab_size), torch.tensor([9]), tok, frame_seconds=0.04)[0]
    assert hyp.text == "aa b"
    assert hyp.tokens == [a, a, sp, b]
    assert hyp.frames == [1, 4, 5, 6]
    assert [w.word for w in hyp.words] == ["aa", "b"]
    assert hyp.words[0].start == 0.04 and hyp.words[0].end == 0.2
    assert hyp.words[1].start == 0.24 and hyp.words[1].end == 0.28
    assert 0.9 < hyp.words[0].confidence <= 1.0


def test_greedy_respects_lengths_in_a_batch():
    tok = CharTokenizer()
    a = tok.encode("a")[0]
    lp = torch.cat([_emissions([a, 0, a, a], tok.vocab_size), _emissions([a, 0, a, a], tok.vocab_size)])
    hyps = greedy_decode(lp, torch.tensor([4, 2]), tok)
    assert [h.text for h in hyps] == ["aa", "a"]


def test_all_blank_gives_empty_text():
    tok = CharTokenizer()
    hyp = greedy_decode(_emissions([0] * 5, tok.vocab_size), torch.tensor([5]), tok)[0]
    assert hyp.text == "" and hyp.words == []


def _bpe_path(text: str):
    """A BPE tokenizer and a best path spelling `text`, each piece followed by a blank."""
    tok = BPETokenizer.train(["one two three four five six seven eight nine ten"] * 50, vocab_size=40)
    path = [0]
    for i in tok.encode(text):
        path += [i, 0]
    return tok, path


def test_bpe_word_boundaries():
    tok, path = _bpe_path("three five")
    hyp = greedy_decode(_emissions(path, tok.vocab_size), torch.tensor([len(path)]), tok)[0]
    assert hyp.text == "three five"
    assert [w.word for w in hyp.words] == ["three", "five"]


def test_beam_of_one_equals_greedy_on_a_real_model_output():
    import asr
    from asr.audio import load_audio
    from asr.transcribe import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip("bundled model not present")
    t = asr.load_model()
    wave = load_audio(Path(__file__).resolve().parents[1] / "examples" / "an4-dev-example.wav")
    feats = t.features(wave).unsqueeze(0)
    with torch.no_grad():
        lp, lengths = t.model(feats, torch.tensor([feats.shape[1]]))
    greedy = greedy_decode(lp, lengths, t.tokenizer)[0]
    beam1 = beam_decode(lp, lengths, t.tokenizer, beam_size=1)[0]
    assert beam1.text == greedy.text and beam1.tokens == greedy.tokens and beam1.frames == greedy.frames
    assert [(w.word, w.start, w.end) for w in beam1.words] == [(w.word, w.start, w.end) for w in greedy.words]
    assert beam_decode(lp, lengths, t.tokenizer, beam_size=20)[0].text == "p i t t s b u r g h"


def test_beam_finds_what_greedy_misses():
    # Two frames where "a" is spread over two paths: best path says blank-blank, but the summed
    # probability of emitting "a" is higher; prefix beam search sums paths, greedy does not.
    tok = CharTokenizer()
    a = tok.encode("a")[0]
    p = torch.full((1, 2, tok.vocab_size), 1e-6)
    p[0, :, 0], p[0, :, a] = 0.6, 0.4
    lp = (p / p.sum(-1, keepdim=True)).log()
    assert greedy_decode(lp, torch.tensor([2]), tok)[0].text == ""
    assert beam_decode(lp, torch.tensor([2]), tok, beam_size=10)[0].text == "a"


def test_beam_with_bpe_and_a_batch():
    tok, path = _bpe_path("three five")
    lp = torch.cat([_emissions(path, tok.vocab_size), _emissions(path, tok.vocab_size)])
    hyps = beam_decode(lp, torch.tensor([len(path), 1]), tok, beam_size=8)
    assert hyps[0].text == "three five" and [w.word for w in hyps[0].words] == ["three", "five"]
    assert hyps[1].text == ""
