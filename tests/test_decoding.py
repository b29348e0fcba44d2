import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from asr.decoding import BeamOptions, beam_decode, decoder_from_settings, greedy_decode, lexicon_from_words, token_name
from asr.errors import InputError
from asr.lm import build_arpa
from asr.text import BLANK, BPETokenizer, CharTokenizer


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
    assert hyp.words[1].start == 0.24 and hyp.words[1].end == 0.32  # "b" spans frames 6-7
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
    from asr.catalog import models_dir

    if not (models_dir() / "an4" / "model.pt").is_file():
        pytest.skip("bundled AN4 model not present")
    t = asr.load_model("an4")
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


# --- word times on emissions whose alignment is known --------------------------------------------


def _spans_emissions(spans: list[tuple[int, int, int]], frames: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """(1, T, V) log-probs: token k most likely on frames [start, end) of its span, blank elsewhere,
    with random competing mass so that the true path is likely but not certain."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, frames, vocab, generator=g)
    logits[0, :, BLANK] += 6.0
    for token, start, end in spans:
        logits[0, start:end, token] += 12.0
    return logits.log_softmax(-1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decoder", ["greedy", "beam", "beam+lm"])
def test_word_times_within_one_frame_of_a_known_alignment(seed, decoder, tmp_path):
    tok = CharTokenizer()
    sp = tok.tokens.index(" ")
    # "go to east street": each letter held 1-3 frames, words separated by blanks and a space.
    rng = torch.Generator().manual_seed(100 + seed)
    spans, truth, t = [], [], 2
    for w, word in enumerate(["go", "to", "east", "street"]):
        if w:
            spans.append((sp, t, t + 1))
            t += 2
        start = t
        for c in tok.encode(word):
            if spans and spans[-1][0] == c:
                t += 1  # a repeated letter needs a blank between its two spans
            n = int(torch.randint(1, 4, (1,), generator=rng))
            spans.append((c, t, t + n))
            t += n + int(torch.randint(0, 2, (1,), generator=rng))
        truth.append((word, start, spans[-1][2]))
    lp = _spans_emissions(spans, t + 3, tok.vocab_size, seed)
    if decoder == "greedy":
        hyp = greedy_decode(lp, torch.tensor([t + 3]), tok, frame_seconds=0.04)[0]
    else:
        lm = None
        if decoder == "beam+lm":
            lm = str(tmp_path / "lm.arpa")
            build_arpa(["go to east street", "go to the street", "east street"], 2, lm)
        hyp = beam_decode(lp, torch.tensor([t + 3]), tok, 0.04, options=BeamOptions(beam_size=10, lm=lm))[0]
    assert hyp.text == "go to east street"
    for w, (word, start, end) in zip(hyp.words, truth, strict=True):
        assert w.word == word
        assert abs(w.start - start * 0.04) <= 0.04 + 1e-9, (w, start)
        assert abs(w.end - end * 0.04) <= 0.04 + 1e-9, (w, end)
        assert 0.5 < w.confidence <= 1.0


# --- language models, lexicons, n-best -----------------------------------------------------------


def _ambiguous_cat(tok) -> torch.Tensor:
    """Emissions of "the c?t": the vowel is 'u' by a little over 'a'."""
    path = [tok.encode(c)[0] if c != " " else tok.tokens.index(" ") for c in "the cat"]
    lp = torch.full((1, 2 * len(path) + 1, tok.vocab_size), -12.0)
    lp[0, :, BLANK] = -0.01
    for i, k in enumerate(path):
        lp[0, 2 * i + 1, BLANK] = -8.0
        lp[0, 2 * i + 1, k] = -0.01
    a, u = tok.encode("a")[0], tok.encode("u")[0]
    vowel = 2 * 5 + 1
    lp[0, vowel, a], lp[0, vowel, u] = math.log(0.4), math.log(0.6)
    return lp.log_softmax(-1)


@pytest.fixture()
def cat_lm(tmp_path):
    path = tmp_path / "lm.arpa"
    build_arpa(["the cat sat on the mat", "the cat ate", "a cat and the dog", "the cut was deep"], 3, path)
    return str(path)


def test_lm_overrules_a_small_acoustic_preference(cat_lm):
    tok = CharTokenizer()
    lp, n = _ambiguous_cat(tok), torch.tensor([15])
    assert greedy_decode(lp, n, tok)[0].text == "the cut"
    assert beam_decode(lp, n, tok, options=BeamOptions(lm=cat_lm, lm_weight=0.0))[0].text == "the cut"
    assert beam_decode(lp, n, tok, options=BeamOptions(lm=cat_lm, lm_weight=2.0))[0].text == "the cat"


def test_lexicon_restricts_the_words(tmp_path):
    tok = CharTokenizer()
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("the\tt h e\ncat\tc a t\ndog\td o g\n")
    hyp = beam_decode(_ambiguous_cat(tok), torch.tensor([15]), tok, options=BeamOptions(lexicon=str(lexicon)))[0]
    assert hyp.text == "the cat"  # "cut" is not a word of the lexicon


def test_nbest_alternatives_are_ranked(cat_lm):
    tok = CharTokenizer()
    hyp = beam_decode(_ambiguous_cat(tok), torch.tensor([15]), tok,
                      options=BeamOptions(lm=cat_lm, lm_weight=0.5, nbest=3))[0]
    assert 1 <= len(hyp.alternatives) <= 2
    assert hyp.text not in [t for t, _ in hyp.alternatives]
    scores = [hyp.score] + [s for _, s in hyp.alternatives]
    assert scores == sorted(scores, reverse=True)


def test_lexicon_from_the_lm_for_bpe(tmp_path):
    tok, path = _bpe_path("three five")
    lm = tmp_path / "lm.arpa"
    build_arpa(["one two three four five", "three five", "five three"], 2, lm)
    hyp = beam_decode(_emissions(path, tok.vocab_size), torch.tensor([len(path)]), tok,
                      options=BeamOptions(lm=str(lm), lm_weight=0.5))[0]
    assert hyp.text == "three five" and [w.word for w in hyp.words] == ["three", "five"]


def test_lexicon_free_with_a_token_lm(tmp_path):
    tok = CharTokenizer()
    lm = tmp_path / "chars.arpa"
    build_arpa(["t h e | c a t", "t h e | c a t | s a t", "a | c a t"], 4, lm)
    hyp = beam_decode(_ambiguous_cat(tok), torch.tensor([15]), tok,
                      options=BeamOptions(lm=str(lm), lexicon_free=True, lm_weight=2.0))[0]
    assert hyp.text == "the cat"


def test_lexicon_words_the_tokenizer_cannot_spell_are_reported():
    tok = CharTokenizer()
    entries, unspellable = lexicon_from_words(["cat", "CAFÉ", "x-ray", "naïve", "k9"], tok)
    assert entries == [("cat", ["c", "a", "t"]), ("CAFÉ", ["c", "a", "f", "e"]), ("naïve", ["n", "a", "i", "v", "e"])]
    assert unspellable == ["x-ray", "k9"]
    assert not tok.unknown  # spelling the LM's words is not counted as unknown transcript characters
    assert lexicon_from_words(["a b"], tok)[0] == []  # not one word


def test_space_token_is_called_bar_in_lexicons():
    tok = CharTokenizer()
    assert [token_name(t) for t in tok.tokens[:3]] == ["<blank>", "|", "'"]


def test_settings_resolve_paths_and_report_missing_files(tmp_path, cat_lm):
    assert decoder_from_settings({}) is greedy_decode
    assert decoder_from_settings({"lm": "lm.arpa", "decoder": "greedy"}, tmp_path) is greedy_decode
    decode = decoder_from_settings({"lm": "lm.arpa", "lm_weight": 2.0}, base_dir=tmp_path)  # beam: an LM is set
    assert decode.keywords["options"].lm == cat_lm and decode.keywords["options"].lm_weight == 2.0
    with pytest.raises(InputError, match="nowhere.arpa: language model file not found"):
        decoder_from_settings({"lm": "nowhere.arpa"}, tmp_path)
    with pytest.raises(ValueError, match="unknown decoder settings: beam_width"):
        decoder_from_settings({"beam_width": 3})


def test_a_binary_lm_needs_a_lexicon(tmp_path):
    fake = tmp_path / "lm.bin"
    fake.write_bytes(b"mmap lm http://kheafield.com/code format version 5\x00" + bytes(100))
    tok = CharTokenizer()
    with pytest.raises(InputError, match="lm.bin: a binary KenLM model does not list its words; pass --lexicon"):
        beam_decode(_ambiguous_cat(tok), torch.tensor([15]), tok, options=BeamOptions(lm=str(fake)))


def test_an_lm_kenlm_cannot_load_is_a_clear_error(tmp_path):
    unigram = tmp_path / "lm.arpa"
    build_arpa(["the cat"], 1, unigram)
    tok = CharTokenizer()
    with pytest.raises(InputError, match="lm.arpa: KenLM cannot load this language model: .*bigram"):
        beam_decode(_ambiguous_cat(tok), torch.tensor([15]), tok, options=BeamOptions(lm=str(unigram)))


def test_a_held_one_letter_word_is_one_word(tmp_path):
    # "p b" with the "b" held for three frames: one word "b", as CTC reads it, not "b b b".
    tok = CharTokenizer()
    p, b, sp = tok.encode("p")[0], tok.encode("b")[0], tok.tokens.index(" ")
    lp = _emissions([0, p, 0, sp, b, b, b, 0], tok.vocab_size)
    lm = tmp_path / "lm.arpa"
    build_arpa(["p b", "b b b", "b", "p"], 2, lm)
    for options in [BeamOptions(lm=str(lm), lm_weight=1.0), BeamOptions(lm=str(lm), lm_weight=1.0, word_score=3.0)]:
        hyp = beam_decode(lp, torch.tensor([8]), tok, options=options)[0]
        assert hyp.text == "p b", options
        assert [(w.word, w.start, w.end) for w in hyp.words] == [("p", 0.04, 0.08), ("b", 0.16, 0.28)]


def test_hotwords_raise_a_words_score(cat_lm, tmp_path):
    tok = CharTokenizer()
    lp, n = _ambiguous_cat(tok), torch.tensor([15])
    base = BeamOptions(lm=cat_lm, lm_weight=0.5)
    assert beam_decode(lp, n, tok, options=base)[0].text == "the cut"
    assert beam_decode(lp, n, tok, options=replace(base, hotwords=(("cat", 2.0),)))[0].text == "the cat"
    assert beam_decode(lp, n, tok, options=replace(base, hotwords=(("cat", 0.01),)))[0].text == "the cut"
    # a hotword the LM has never seen joins the lexicon
    assert beam_decode(lp, n, tok, options=replace(base, hotwords=(("cot", 0.0),)))[0].text == "the cut"
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("the\tt h e\ncut\tc u t\n")
    only_lexicon = BeamOptions(lexicon=str(lexicon), hotwords=(("cat", 3.0),))
    assert beam_decode(lp, n, tok, options=only_lexicon)[0].text == "the cat"
    # at LM weight 0 (the lexicon alone, as tuning may choose) the boosts still count, at their own size
    off = replace(base, lm_weight=0.0)
    assert beam_decode(lp, n, tok, options=replace(off, hotwords=(("cat", 2.0),)))[0].text == "the cat"
    assert beam_decode(lp, n, tok, options=replace(off, hotwords=(("cat", 0.01),)))[0].text == "the cut"
    with pytest.raises(InputError, match="LM weight of 0 or more"):
        beam_decode(lp, n, tok, options=replace(base, lm_weight=-1.0, hotwords=(("cat", 2.0),)))


def test_hotwords_need_words_to_boost():
    tok = CharTokenizer()
    with pytest.raises(InputError, match="give --lm"):
        beam_decode(_ambiguous_cat(tok), torch.tensor([15]), tok, options=BeamOptions(hotwords=(("cat", 2.0),)))
    decode = decoder_from_settings({"lexicon": None, "hotwords": [["Cat", 2]], "decoder": "beam"})
    assert decode.keywords["options"].hotwords == (("cat", 2.0),)
