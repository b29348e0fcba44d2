import gzip
import math
import random
from collections import Counter

import pytest

from asr.errors import InputError
from asr.lm import EOS, FALLBACK_DISCOUNTS, UNK, ArpaModel, build_arpa, kn_discounts, read_arpa_vocab

HANDWRITTEN = [
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore!",
    "Don't stop: we're nearly there, aren't we?",
    "Speech recognition with CTC needs no alignment",
    "The dog sleeps by the door.",
    "Where is the nearest train station?",
    "I would like a cup of tea, please.",
    "The train to the city leaves at nine.",
    "Turn left at the second light, then go straight.",
    "He reads the paper every morning.",
    "We're going to the sea shore on Sunday",
    "Is the station far from here?",
    "",
    "   ",
    "Please close the door.",
    "The fox and the dog are friends.",
]
SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "she", "he", "the children", "our teacher"]
VERBS = ["sees", "likes", "finds", "wants", "eats", "reads", "builds", "paints"]
OBJECTS = ["the ball", "a red apple", "the new book", "a small house", "the green door", "some bread"]
TAILS = ["", "in the morning", "at night", "every day", "with a smile", "near the river"]


def grammar_lines(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(filter(None, map(rng.choice, (SUBJECTS, VERBS, OBJECTS, TAILS)))) for _ in range(n)]


CORPUS = HANDWRITTEN + grammar_lines(40, seed=0)


def vocabulary(path) -> list[str]:
    """V: what the model predicts (every unigram but <s>)."""
    return [*read_arpa_vocab(path), EOS, UNK]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("corpus", [CORPUS, ["hello"]], ids=["corpus", "one-word"])
def test_every_context_sums_to_one(tmp_path, order, corpus):
    path = tmp_path / "lm.arpa"
    build_arpa(corpus, order=order, out=path)
    model = ArpaModel.load(path)
    vocab = vocabulary(path)
    contexts = [()] + [g for g in model.ngrams if len(g) < order]
    assert len(contexts) > 1 or order == 1
    for context in contexts:
        total = sum(10 ** model.log10_prob(w, context) for w in vocab)
        assert total == pytest.approx(1, abs=1e-4), context
    assert model.ngrams[("<s>",)][0] == -99


@pytest.mark.parametrize("min_count, vocab_size", [(2, None), (3, None), (2, 12), (4, 8)])
def test_pruned_models_still_sum_to_one(tmp_path, min_count, vocab_size):
    """Dropped n-grams' mass goes to the backoff, and kept ones interpolate with the pruned lower order."""
    lines = grammar_lines(400, seed=2)
    full = build_arpa(lines, order=3)
    path = tmp_path / "lm.arpa"
    stats = build_arpa(lines, order=3, out=path, min_count=min_count, vocab_size=vocab_size)
    assert stats.ngrams[1] < full.ngrams[1] and stats.ngrams[2] < full.ngrams[2]
    model = ArpaModel.load(path)
    vocab = vocabulary(path)
    if vocab_size:
        assert len(vocab) == vocab_size + 2  # the words kept, </s> and <unk>
    for context in [()] + [g for g in model.ngrams if len(g) < 3]:
        total = sum(10 ** model.log10_prob(w, context) for w in vocab)
        assert total == pytest.approx(1, abs=1e-4), context
    for g in model.ngrams:  # every listed n-gram's prefix and suffix is listed too (KenLM wants both)
        assert len(g) == 1 or (g[:-1] in model.ngrams and g[1:] in model.ngrams), g


def test_vocabulary_limit_keeps_the_most_frequent_words(tmp_path):
    path = tmp_path / "lm.arpa"
    build_arpa(["the cat", "the dog", "the cat sat", "a bird"], order=2, out=path, vocab_size=2)
    assert sorted(read_arpa_vocab(path)) == ["cat", "the"]
    assert ArpaModel.load(path).log10_prob("dog", ["the"]) == ArpaModel.load(path).log10_prob("<unk>", ["the"])


def test_discounts_from_count_of_counts():
    # Y = 10 / (10 + 2*5) = 0.5; D1 = 1 - 2*0.5*5/10; D2 = 2 - 3*0.5*3/5; D3 = 3 - 4*0.5*2/3
    assert kn_discounts([10, 5, 3, 2]) == pytest.approx((0.5, 1.1, 3 - 4 / 3))
    assert kn_discounts([3, 1, 0, 0]) is None  # n3 = 0
    assert kn_discounts([1, 1, 10, 1]) is None  # D2 = 2 - 3 * (1/3) * 10 < 0


def test_top_order_discounts_come_from_raw_counts():
    lines = grammar_lines(300, seed=1)
    raw = Counter()
    for line in lines:
        tokens = ["<s>", *line.split(), "</s>"]
        raw.update(zip(tokens[:-2], tokens[1:-1], tokens[2:], strict=True))
    coc = Counter(raw.values())
    expected = kn_discounts([coc[k] for k in (1, 2, 3, 4)])
    assert expected is not None
    stats = build_arpa(lines, order=3)
    assert 3 not in stats.fallback
    assert stats.discounts[2] == pytest.approx(expected)


def test_hand_computed_bigram_model(tmp_path):
    """Lines "a b" and "a": <s> a b </s>, <s> a </s>.

    Bigram counts (raw): <s> a: 2, a b: 1, a </s>: 1, b </s>: 1 -> n3 = 0, fallback D = 0.5, 1, 1.5.
    Unigram continuation counts: a: 1 (<s>), b: 1 (a), </s>: 2 (a, b), <unk>: 0; n3 = 0 -> fallback.
    Unigrams, V = {a, b, </s>, <unk>}: total 4, freed mass 0.5 + 0.5 + 1 = 2 -> gamma = 0.5, uniform 1/8:
      p(a) = p(b) = 0.5/4 + 1/8 = 0.25, p(</s>) = 1/4 + 1/8 = 0.375, p(<unk>) = 1/8.
    Bigrams: context <s>: total 2, gamma = 1/2:           p(a|<s>) = (2-1)/2 + 0.5*0.25 = 0.625
             context a: total 2, gamma = (0.5+0.5)/2:     p(b|a) = 0.5/2 + 0.5*0.25 = 0.375
                                                          p(</s>|a) = 0.5/2 + 0.5*0.375 = 0.4375
             context b: total 1, gamma = 0.5:             p(</s>|b) = 0.5 + 0.5*0.375 = 0.6875
    """
    path = tmp_path / "lm.arpa"
    stats = build_arpa(["a b", "A!"], order=2, out=path)
    assert stats.fallback == [1, 2] and stats.discounts == [FALLBACK_DISCOUNTS] * 2
    assert stats.ngrams == [5, 4] and stats.vocab_size == 4 and stats.words == 3
    model = ArpaModel.load(path)
    expected = {
        ("a",): (0.25, 0.5), ("b",): (0.25, 0.5), ("</s>",): (0.375, 1), ("<unk>",): (0.125, 1),
        ("<s>", "a"): (0.625, 1), ("a", "b"): (0.375, 1), ("a", "</s>"): (0.4375, 1), ("b", "</s>"): (0.6875, 1),
    }
    for ngram, (p, bow) in expected.items():
        assert 10 ** model.ngrams[ngram][0] == pytest.approx(p, abs=1e-5), ngram
        assert 10 ** model.ngrams[ngram][1] == pytest.approx(bow, abs=1e-5), ngram
    assert 10 ** model.ngrams[("<s>",)][1] == pytest.approx(0.5, abs=1e-5)
    # An unseen bigram backs off: p(b | b) = bow(b) * p(b) = 0.5 * 0.25.
    assert 10 ** model.log10_prob("b", ["b"]) == pytest.approx(0.125, abs=1e-5)
    assert 10 ** model.sentence_logprob("a b") == pytest.approx(0.625 * 0.375 * 0.6875, abs=1e-5)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_kenlm_agrees_with_our_query(tmp_path, order):
    kenlm_module = pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    from flashlight.lib.text.dictionary import Dictionary

    model_path = tmp_path / "lm.arpa"
    build_arpa(CORPUS, order=order, out=model_path)
    build_arpa(CORPUS, order=order, out=tmp_path / "lm.arpa.gz")
    ours = ArpaModel.load(model_path)
    words = Dictionary()
    for w in [*read_arpa_vocab(model_path), "zebra"]:  # a lexicon word the LM lacks scores as <unk>
        words.add_entry(w)
    sentences = ["the cat sees the ball at night", "the dog sleeps by the zebra", "door the please", "he"]
    for path in (model_path, tmp_path / "lm.arpa.gz"):  # KenLM reads gzipped ARPA itself
        kenlm = kenlm_module.KenLM(str(path), words)
        for sentence in sentences:
            state, total = kenlm.start(False), 0.0
            for w in sentence.split():
                state, score = kenlm.score(state, words.get_index(w))
                total += score
            total += kenlm.finish(state)[1]
            assert total == pytest.approx(ours.sentence_logprob(sentence), abs=1e-3)  # both log10


def test_trigram_beats_unigram_on_held_out_lines(tmp_path):
    train, held_out = grammar_lines(400, seed=2), grammar_lines(50, seed=3)
    build_arpa(train, order=1, out=tmp_path / "1.arpa")
    build_arpa(train, order=3, out=tmp_path / "3.arpa")
    unigram, trigram = ArpaModel.load(tmp_path / "1.arpa"), ArpaModel.load(tmp_path / "3.arpa")
    assert trigram.perplexity(held_out) < 0.5 * unigram.perplexity(held_out)
    unknown = trigram.perplexity(["the cat sees a purple elephant", "zyx"])
    assert math.isfinite(unknown) and unknown > trigram.perplexity(held_out)


def test_degenerate_inputs(tmp_path):
    stats = build_arpa(["Hello."], order=3, out=tmp_path / "lm.arpa")
    assert stats.sentences == 1 and stats.words == 1 and stats.ngrams == [4, 2, 1]
    assert math.isfinite(ArpaModel.load(tmp_path / "lm.arpa").sentence_logprob("hello"))
    with pytest.raises(ValueError, match="no words"):
        build_arpa([], order=3)
    with pytest.raises(ValueError, match="no words"):
        build_arpa(["", "  ", "?!"], order=3)
    with pytest.raises(ValueError, match="order"):
        build_arpa(["hello"], order=0)
    assert not (tmp_path / "none.arpa").exists()


def test_read_vocab_plain_and_gz_and_deterministic(tmp_path):
    lines = ["b a c", "<s> a d </s>", "C, b!"]
    build_arpa(lines, order=2, out=tmp_path / "lm.arpa")
    build_arpa(lines, order=2, out=tmp_path / "lm.arpa.gz")
    assert read_arpa_vocab(tmp_path / "lm.arpa") == ["a", "b", "c", "d"]
    assert read_arpa_vocab(tmp_path / "lm.arpa.gz") == ["a", "b", "c", "d"]
    plain = (tmp_path / "lm.arpa").read_bytes()
    assert gzip.decompress((tmp_path / "lm.arpa.gz").read_bytes()) == plain
    gz = (tmp_path / "lm.arpa.gz").read_bytes()
    build_arpa(reversed(lines), order=2, out=tmp_path / "lm.arpa.gz")
    assert (tmp_path / "lm.arpa.gz").read_bytes() == gz


def test_not_an_arpa_file(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"mmap lm http://kheafield.com/code\x00\xff\xfe")
    with pytest.raises(InputError, match="x.bin"):
        read_arpa_vocab(tmp_path / "x.bin")
    with pytest.raises(InputError, match="missing.arpa"):
        ArpaModel.load(tmp_path / "missing.arpa")
