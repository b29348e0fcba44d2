import torch

from asr.decoding import greedy_decode
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


def test_bpe_word_boundaries():
    tok = BPETokenizer.train(["one two three four five six seven eight nine ten"] * 50, vocab_size=40)
    ids = tok.encode("three five")
    path = [0]
    for i in ids:
        path += [i, 0]
    hyp = greedy_decode(_emissions(path, tok.vocab_size), torch.tensor([len(path)]), tok)[0]
    assert hyp.text == "three five"
    assert [w.word for w in hyp.words] == ["three", "five"]
