"""Transcript text: normalisation and the two tokenizers (characters, sentencepiece BPE).

Both tokenizers share one small interface, so the rest of the code never asks which it has:
``vocab_size``, ``blank`` (always 0), ``tokens`` (the symbol of every id), ``encode(text)``,
``decode(ids)``, ``to_dict()``; ``tokenizer_from_dict`` rebuilds either from a checkpoint.
Characters that the tokenizer cannot represent are counted in ``unknown`` (a Counter), never
dropped silently; training reports them.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

BLANK = 0
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
# Punctuation that carries no spoken content is removed; dashes and slashes separate words.
_SEPARATORS = re.compile(r"[-\u2010-\u2015/_]+")
_PUNCTUATION = re.compile(r"[.,!?;:\"()\[\]{}\u201c\u201d\u201e\u201a\u00ab\u00bb\u2039\u203a\u2026\u00bf\u00a1]+")
_SPACES = re.compile(r"\s+")
# Control and format characters other than whitespace (zero-width spaces, byte-order marks, soft hyphens)
# are invisible and carry nothing spoken; lone surrogates could not even be written to a file.
_INVISIBLE = {"Cc", "Cf", "Cs"}


def normalize_text(text: str) -> str:
    """Lower-case, strip accents, punctuation and invisible characters, unify apostrophes, collapse whitespace.

    Applied to training transcripts, to references before scoring and to hypotheses, so that WER
    compares words, not typography. Digits and non-Latin letters are kept: the tokenizer reports them.
    """
    # Apostrophes first: NFKD would turn the acute accent \u00b4 into a space and a combining mark.
    text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    text = "".join(c for c in text if not unicodedata.combining(c)
                   and (c.isspace() or unicodedata.category(c) not in _INVISIBLE))
    text = text.translate(_APOSTROPHES).lower()
    text = _SEPARATORS.sub(" ", text)
    text = _PUNCTUATION.sub("", text)
    return _SPACES.sub(" ", text).strip()


def spell_out(text: str) -> str:
    """The letters of `text` as a speaker spells them, one word each: "Swiss-Vale" -> "s w i s s v a l e".

    Normalised first (`normalize_text`), so accents go and case folds; everything that is not a letter
    (spaces, apostrophes, digits) is dropped, as spelled names run their words together ("Mary Jo" -> "m a r y
    j o"). For LM text of tasks where speakers spell names or words, such as AN4's census questions.
    """
    return " ".join(c for c in normalize_text(text) if c.isalpha())


class CharTokenizer:
    """Blank, space, apostrophe and the letters a-z (or a given alphabet)."""

    kind = "char"

    def __init__(self, alphabet: str = " 'abcdefghijklmnopqrstuvwxyz"):
        self.tokens = ["<blank>", *alphabet]
        self._ids = {c: i for i, c in enumerate(self.tokens) if i != BLANK}
        self.blank = BLANK
        self.unknown: Counter[str] = Counter()

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        ids = []
        for c in normalize_text(text):
            if c in self._ids:
                ids.append(self._ids[c])
            else:
                self.unknown[c] += 1
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return _SPACES.sub(" ", "".join(self.tokens[i] for i in ids if i != BLANK)).strip()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "alphabet": "".join(self.tokens[1:])}


class BPETokenizer:
    """Sentencepiece BPE; our id = sentencepiece id + 1, so that id 0 stays the CTC blank."""

    kind = "bpe"

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.tokens = ["<blank>", *(self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size()))]
        self.blank = BLANK
        self.unknown: Counter[str] = Counter()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Train on normalised transcripts; `vocab_size` counts sentencepiece pieces (blank excluded)."""
        import sentencepiece as spm

        texts = [t for t in (normalize_text(t) for t in texts) if t]
        if not texts:
            raise ValueError("no transcript text to train a BPE tokenizer on")
        proto = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocab_size,
                model_type="bpe", character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0,
                hard_vocab_limit=False, minloglevel=2,
            )
        except RuntimeError as e:  # e.g. fewer pieces than distinct characters in the text
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot train a BPE tokenizer with {vocab_size} pieces: {reason}") from None
        return cls(proto.getvalue())

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        text = normalize_text(text)
        pieces = self._sp.encode(text)
        unk = self._sp.unk_id()
        if unk in pieces:
            self.unknown.update(c for c in text if c != " " and self._sp.piece_to_id(c) == unk)
            pieces = [p for p in pieces if p != unk]
        return [p + 1 for p in pieces]

    def decode(self, ids: Iterable[int]) -> str:
        # A lone "\u2581" piece decodes to a space of its own: collapse, as CharTokenizer.decode does.
        return _SPACES.sub(" ", self._sp.decode([i - 1 for i in ids if i != BLANK])).strip()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model_proto": self.model_proto}


def tokenizer_from_dict(d: dict) -> CharTokenizer | BPETokenizer:
    if d["kind"] == "char":
        return CharTokenizer(d["alphabet"])
    if d["kind"] == "bpe":
        return BPETokenizer(d["model_proto"])
    raise ValueError(f"unknown tokenizer kind {d['kind']!r}")


def build_tokenizer(spec: str, texts: Iterable[str]) -> CharTokenizer | BPETokenizer:
    """`spec` is ``char`` or ``bpe:N`` (N sentencepiece pieces, trained on `texts`)."""
    if spec == "char":
        return CharTokenizer()
    if spec.startswith("bpe:") and spec[4:].isdigit():
        return BPETokenizer.train(texts, int(spec[4:]))
    raise ValueError(f"tokenizer must be 'char' or 'bpe:N', got {spec!r}")


def describe_unknown(unknown: Counter[str], limit: int = 10) -> str:
    """'12 characters outside the vocabulary: '1' x5, 'é' x3, ...' for logs."""
    total = sum(unknown.values())
    shown = ", ".join(f"{c!r} x{n}" for c, n in unknown.most_common(limit))
    more = "" if len(unknown) <= limit else f", and {len(unknown) - limit} more kinds"
    return f"{total} characters outside the vocabulary: {shown}{more}"
