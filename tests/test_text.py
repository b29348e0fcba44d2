import string
from collections import Counter

import pytest
import torch

from asr.text import (
    BLANK,
    BPETokenizer,
    CharTokenizer,
    build_tokenizer,
    describe_unknown,
    normalize_text,
    spell_out,
    tokenizer_from_dict,
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore!",
    "Don't stop: we're nearly there, aren't we?",
    "Speech recognition with CTC needs no alignment",
    "Hello world, this is a small test of byte pair encoding",
    "Jack quizzed five experts about the vexing jumbo puzzle",
]
TRAIN_TEXTS = SENTENCES * 30  # sentencepiece wants a few hundred lines


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(TRAIN_TEXTS, vocab_size=40)


# normalize_text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("SHOUTING Mixed CaSe", "shouting mixed case"),
        ("Wait... what?! Yes; no: (maybe) [x] {y}", "wait what yes no maybe x y"),
        ("\u201cQuoted\u201d \u00abtext\u00bb and\u2026 more", "quoted text and more"),
        ("\u201eGut\u201c, sagte er", "gut sagte er"),
        ("\u00bfQu\u00e9 tal? \u00a1Hola!", "que tal hola"),
        ("don\u2019t", "don't"),
        ("don\u2018t", "don't"),
        ("don`t", "don't"),
        ("don\u00b4t", "don't"),
        ("It's Tom's", "it's tom's"),
        ("Caf\u00e9 na\u00efve \u00dcber r\u00e9sum\u00e9 \u00e7a", "cafe naive uber resume ca"),
        ("Cafe\u0301", "cafe"),  # combining accent (decomposed input)
        ("\ufb01ne", "fine"),  # ligature
        ("well-known state\u2014of\u2013the\u2010art", "well known state of the art"),
        ("and/or snake_case -- dash", "and or snake case dash"),
        ("  a \t b\n\nc\u00a0d  ", "a b c d"),
        ("", ""),
        ("?!.", ""),
        ("Room 101", "room 101"),  # digits are kept: the tokenizer reports them
        ("Stra\u00dfe \u00f8re", "stra\u00dfe \u00f8re"),  # letters without a decomposition are kept
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected
    assert normalize_text(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Sharon", "s h a r o n"),
        ("MARY JO", "m a r y j o"),  # spelled names run their words together
        ("O'Neil-Smith", "o n e i l s m i t h"),
        ("Zoë", "z o e"),
        ("29 Palms", "p a l m s"),
        ("", ""),
    ],
)
def test_spell_out(raw, expected):
    assert spell_out(raw) == expected


# CharTokenizer ----------------------------------------------------------------------------------


def test_char_vocabulary():
    tok = CharTokenizer()
    assert tok.blank == BLANK == 0
    assert tok.tokens[0] == "<blank>"
    assert tok.vocab_size == len(tok.tokens) == 29
    assert sorted(tok.tokens[1:]) == sorted([" ", "'", *string.ascii_lowercase])
    assert len(set(tok.tokens)) == len(tok.tokens)


@pytest.mark.parametrize("text", [*SENTENCES, "It's O'Brien's", "a", ""])
def test_char_round_trip(text):
    tok = CharTokenizer()
    ids = tok.encode(text)
    assert all(1 <= i < tok.vocab_size for i in ids)
    assert len(ids) == len(normalize_text(text))
    assert tok.decode(ids) == normalize_text(text)
    assert not tok.unknown


def test_char_decode_skips_blanks_and_collapses_spaces():
    tok = CharTokenizer()
    a, b, space = tok.tokens.index("a"), tok.tokens.index("b"), tok.tokens.index(" ")
    assert tok.decode([0, space, a, 0, space, space, 0, b, space, 0]) == "a b"
    assert tok.decode([]) == ""
    assert tok.decode([0, 0]) == ""


def test_char_unknown_characters_are_counted_not_lost():
    tok = CharTokenizer()
    ids = tok.encode("Room 101 in Stra\u00dfe")
    assert tok.decode(ids) == "room in strae"
    assert tok.unknown == Counter({"1": 2, "0": 1, "\u00df": 1})
    tok.encode("2 x 2")
    assert tok.unknown["2"] == 2  # accumulates over calls
    assert sum(tok.unknown.values()) == 6


def test_char_custom_alphabet_round_trip():
    tok = CharTokenizer(" abc")
    again = tokenizer_from_dict(tok.to_dict())
    assert isinstance(again, CharTokenizer)
    assert again.tokens == tok.tokens == ["<blank>", " ", "a", "b", "c"]
    assert again.encode("a cab d") == tok.encode("a cab d") == [2, 1, 4, 2, 3, 1]
    assert tok.unknown == Counter({"d": 1})


def test_char_tokenizer_through_a_checkpoint(tmp_path):
    tok = CharTokenizer()
    torch.save({"tokenizer": tok.to_dict()}, tmp_path / "ckpt.pt")
    again = tokenizer_from_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True)["tokenizer"])
    assert again.tokens == tok.tokens
    assert again.encode(SENTENCES[0]) == tok.encode(SENTENCES[0])


# BPETokenizer -----------------------------------------------------------------------------------


def test_bpe_vocabulary(bpe):
    assert bpe.kind == "bpe"
    assert bpe.blank == BLANK == 0
    assert bpe.tokens[0] == "<blank>"
    assert bpe.vocab_size == len(bpe.tokens) >= 40
    assert "\u2581" in bpe.tokens  # the word-boundary piece


@pytest.mark.parametrize("text", [*SENTENCES, "the fox sells shells", "ZIG zag", "a"])
def test_bpe_round_trip(bpe, text):
    ids = bpe.encode(text)
    assert ids
    assert all(1 <= i < bpe.vocab_size for i in ids)  # 0 is the CTC blank
    assert bpe.decode(ids) == normalize_text(text)


def test_bpe_decode_skips_blanks(bpe):
    ids = bpe.encode("the lazy dog")
    with_blanks = [0]
    for i in ids:
        with_blanks += [i, 0]
    assert bpe.decode(with_blanks) == "the lazy dog"
    assert bpe.decode([]) == ""


def test_bpe_decode_has_no_stray_spaces(bpe):
    """A CTC model may emit the lone word-boundary piece anywhere; the text must stay single-spaced."""
    space = bpe.tokens.index("\u2581")
    ids = bpe.encode("the fox")
    for path in ([space, *ids], [*ids, space], [*ids[:1], space, *ids[1:]], [space, space, *ids, space]):
        text = bpe.decode(path)
        assert text == text.strip() and "  " not in text, repr(text)
        assert text.replace(" ", "") == "thefox"


def test_bpe_unknown_characters_are_counted(bpe):
    bpe.unknown.clear()
    ids = bpe.encode("the 42 fox \u00df")
    assert all(1 <= i < bpe.vocab_size for i in ids)
    assert bpe.unknown == Counter({"4": 1, "2": 1, "\u00df": 1})
    assert bpe.decode(ids) == "the fox"


def test_bpe_round_trip_through_dict_and_checkpoint(bpe, tmp_path):
    again = tokenizer_from_dict(bpe.to_dict())
    assert isinstance(again, BPETokenizer)
    assert again.tokens == bpe.tokens
    torch.save({"tokenizer": bpe.to_dict()}, tmp_path / "ckpt.pt")
    loaded = tokenizer_from_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True)["tokenizer"])
    assert loaded.tokens == bpe.tokens
    for text in SENTENCES:
        assert loaded.encode(text) == again.encode(text) == bpe.encode(text)
        assert loaded.decode(bpe.encode(text)) == normalize_text(text)


def test_bpe_train_needs_text():
    with pytest.raises(ValueError):
        BPETokenizer.train(["", "?!", "   "], vocab_size=40)


@pytest.mark.parametrize("vocab_size", [0, 3])
def test_bpe_train_with_too_few_pieces_is_a_value_error(vocab_size):
    with pytest.raises(ValueError, match=f"{vocab_size} pieces"):
        BPETokenizer.train(TRAIN_TEXTS, vocab_size=vocab_size)


# build_tokenizer, tokenizer_from_dict, describe_unknown -------------------------------------------


def test_build_char_tokenizer():
    tok = build_tokenizer("char", [])
    assert isinstance(tok, CharTokenizer)


def test_build_bpe_tokenizer():
    tok = build_tokenizer("bpe:40", iter(TRAIN_TEXTS))  # any iterable, a generator included
    assert isinstance(tok, BPETokenizer)
    assert tok.vocab_size >= 40
    assert tok.decode(tok.encode(SENTENCES[1])) == normalize_text(SENTENCES[1])


@pytest.mark.parametrize("spec", ["", "word", "chars", "Char", "bpe", "bpe:", "bpe:x", "bpe:-5", "BPE:40",
                                  "bpe:40 ", "bpe:4.5", "bpe:0"])
def test_build_tokenizer_invalid_spec(spec):
    with pytest.raises(ValueError):
        build_tokenizer(spec, TRAIN_TEXTS)


def test_tokenizer_from_dict_unknown_kind():
    with pytest.raises(ValueError, match="wordpiece"):
        tokenizer_from_dict({"kind": "wordpiece"})


def test_describe_unknown():
    assert describe_unknown(Counter("aaabbc")) == "6 characters outside the vocabulary: 'a' x3, 'b' x2, 'c' x1"
    many = Counter({c: 20 - i for i, c in enumerate("0123456789\u00df\u00f8")})
    text = describe_unknown(many, limit=3)
    assert text == "174 characters outside the vocabulary: '0' x20, '1' x19, '2' x18, and 9 more kinds"


def test_describe_unknown_after_encoding():
    tok = CharTokenizer()
    tok.encode("Flight 747, gate 7")
    assert describe_unknown(tok.unknown) == "4 characters outside the vocabulary: '7' x3, '4' x1"
