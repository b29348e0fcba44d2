"""Word n-gram language models: estimate interpolated modified Kneser-Ney, write and read ARPA files.

Hand-written because no well-kept pip package does this: KenLM's ``lmplz`` is a C++ binary that no
wheel ships, and NLTK's ``KneserNeyInterpolated`` is not modified Kneser-Ney, writes no ARPA and is
slow. The estimator follows Chen & Goodman (1998) as KenLM does:

* Counts. The highest order uses raw counts; a lower-order n-gram uses its continuation count, the
  number of distinct words seen to its left, except n-grams that start with ``<s>`` (nothing can
  stand to their left), which keep raw counts.
* Discounts. Per order, from the count-of-counts n1..n4 of those counts: Y = n1 / (n1 + 2 n2),
  D_k = k - (k + 1) Y n_{k+1} / n_k for k = 1, 2, 3 (D3 serves every count >= 3).
* Interpolation. p(w | h) = (c(hw) - D(c(hw))) / c(h.) + gamma(h) p(w | h'), where h' drops the
  first word of h and gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / c(h.) is the mass the
  discounts freed. Unigrams interpolate with the uniform distribution over the vocabulary V: every
  word, ``</s>`` and ``<unk>``, not ``<s>``, which gets probability 0 (log10 -99 in ARPA).

An unseen hw gets exactly gamma(h) p(w | h'), so gamma(h) is the ARPA backoff weight of h and the
listed probabilities are the interpolated ones: querying the file by backoff reproduces the model, and
for every context the probabilities over V sum to 1.

Pruning, for a model that ships (``min_count``, ``vocab_size``):

* A vocabulary limit maps every word outside the most frequent ``vocab_size`` to ``<unk>`` before counting.
* A count cutoff drops n-grams (n >= 2) whose adjusted count is below ``min_count``, except the prefixes and
  suffixes of kept longer ones (ARPA queries need a listed context, and KenLM wants both). A dropped n-gram's
  whole count goes to its context's backoff mass, gamma(h) = (sum of discounts of kept + counts of dropped)
  / c(h.), and kept n-grams interpolate with what the pruned lower order returns when queried, so every
  context still sums to 1 and the file reproduces the pruned model exactly.
"""

from __future__ import annotations

import gzip
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.atomic import atomic_open
from asr.errors import InputError
from asr.text import normalize_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_UNK, _BOS, _EOS = 0, 1, 2  # word ids; the corpus words follow in sorted order, so id order is output order
# KenLM's --discount_fallback: used for an order whose count-of-counts give no valid discounts,
# as in tiny corpora where n3 or n4 is 0 or D_k falls outside (0, k].
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)

Ngram = tuple[int, ...]


@dataclass
class NgramStats:
    """What `build_arpa` estimated: sizes per order (index 0 = unigrams) and the discounts it used."""

    order: int
    sentences: int
    words: int  # running words, without <s> and </s>
    vocab_size: int  # |V|: distinct words + </s> + <unk>
    ngrams: list[int] = field(default_factory=list)  # n-grams listed per order, <s> included in the unigrams
    discounts: list[tuple[float, float, float]] = field(default_factory=list)
    fallback: list[int] = field(default_factory=list)  # orders (1-based) that used FALLBACK_DISCOUNTS


def kn_discounts(n: Sequence[int]) -> tuple[float, float, float] | None:
    """D1, D2, D3+ from count-of-counts ``n = (n1, n2, n3, n4)``; None when they are not valid.

    Valid means every n_k > 0 and 0 < D_k <= k, which keeps every discounted count non-negative and
    leaves mass for the lower order.
    """
    if min(n[:4]) <= 0:
        return None
    y = n[0] / (n[0] + 2 * n[1])
    d1, d2, d3 = (k - (k + 1) * y * n[k] / n[k - 1] for k in (1, 2, 3))
    return (d1, d2, d3) if 0 < d1 <= 1 and 0 < d2 <= 2 and 0 < d3 <= 3 else None


def _sentences(lines: Iterable[str]) -> list[list[str]]:
    """Normalised, whitespace-split lines; empty ones dropped, as are sentence markers in the text."""
    sentences = []
    for line in lines:
        # Before normalising, which would split "</s>" at its slash.
        words = normalize_text(line.replace(BOS, " ").replace(EOS, " ")).split()
        if words:
            sentences.append(words)
    return sentences


def _adjusted_counts(sentences: list[list[int]], order: int) -> list[Counter[Ngram]]:
    """levels[n - 1]: the KenLM-style adjusted count of every n-gram of the text (see the module doc)."""
    stream = [t for s in sentences for t in (_BOS, *s, _EOS)]
    top = Counter(zip(*(stream[i:] for i in range(order)), strict=False))  # stops at the shortest
    # The stream runs sentences together; an n-gram with </s> before its end or <s> after its start spans two.
    levels = [Counter({g: c for g, c in top.items() if _EOS not in g[:-1] and _BOS not in g[1:]})]
    for n in range(order - 1, 0, -1):
        level = Counter(g[1:] for g in levels[0])  # each (n+1)-gram type adds one left context to its suffix
        level.update(p for p in (tuple([_BOS, *s, _EOS][:n]) for s in sentences) if len(p) == n)
        levels.insert(0, level)
    return levels


def _kept(levels: list[Counter[Ngram]], min_count: int) -> list[set[Ngram] | None]:
    """Per order, the n-grams that survive the count cutoff (None: all of them), top order first."""
    kept: list[set[Ngram] | None] = [None] * len(levels)
    if min_count <= 1:
        return kept
    above: set[Ngram] = set()
    for n in range(len(levels), 1, -1):
        level = {g for g, c in levels[n - 1].items() if c >= min_count}
        level |= {g[:-1] for g in above} | {g[1:] for g in above}
        kept[n - 1] = above = level
    return kept


def _estimate(levels: list[Counter[Ngram]], vocab_size: int, min_count: int = 1) -> tuple[list, list, list, list]:
    """Interpolated probabilities and backoff weights per order, and the discounts used."""
    probs: list[dict[Ngram, float]] = []
    bows: list[dict[Ngram, float]] = []
    discounts, fallback = [], []
    kept = _kept(levels, min_count)

    def lower(g: Ngram) -> float:
        """p(g[-1] | g[:-1]) as the (pruned) model of order len(g) answers by backoff."""
        listed = probs[len(g) - 1].get(g)
        return listed if listed is not None else bows[len(g) - 2].get(g[:-1], 1.0) * lower(g[1:])

    for n, counts in enumerate(levels, 1):
        if n == 1:  # <s> is never predicted; <unk> is in V with count 0
            counts = {g: c for g, c in counts.items() if g != (_BOS,)}
            counts.setdefault((_UNK,), 0)
        coc = Counter(counts.values())
        d = kn_discounts([coc[k] for k in (1, 2, 3, 4)])
        if d is None:
            d = FALLBACK_DISCOUNTS
            fallback.append(n)
        discounts.append(d)
        disc = (0.0, *d)  # indexed by min(count, 3)
        total: dict[Ngram, float] = defaultdict(float)
        freed: dict[Ngram, float] = defaultdict(float)
        keep = kept[n - 1]
        for g, c in counts.items():
            total[g[:-1]] += c
            freed[g[:-1]] += disc[min(c, 3)] if keep is None or g in keep else c
        gamma = {h: freed[h] / total[h] for h in total}
        if n == 1:
            uniform = gamma[()] / vocab_size
            probs.append({g: (c - disc[min(c, 3)]) / total[()] + uniform for g, c in counts.items()})
        else:
            kept_counts = counts.items() if keep is None else ((g, c) for g, c in counts.items() if g in keep)
            probs.append({g: (c - disc[min(c, 3)]) / total[g[:-1]] + gamma[g[:-1]] * lower(g[1:])
                          for g, c in kept_counts})
            # Backoff weights only for contexts listed one order down (<s> is written as a unigram too).
            listed = probs[-2]
            bows.append(gamma if keep is None else {h: b for h, b in gamma.items() if h in listed or h == (_BOS,)})
    bows.append({})  # the highest order backs off nowhere
    return probs, bows, discounts, fallback


def _write_arpa(out: str | Path, words: list[str], probs: list[dict[Ngram, float]], bows: list[dict[Ngram, float]]):
    """Write sorted ARPA text atomically; a ``.gz`` name is gzipped (no timestamp, so reproducible; level 6,
    as gzip's default, since 9 doubles the time for a few percent)."""
    with atomic_open(out, "wb") as raw:
        gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) if str(out).endswith(".gz") else None
        f = io.TextIOWrapper(gz or raw, encoding="utf-8", newline="\n")
        f.write("\\data\\\n" + "".join(f"ngram {n}={len(p) + (n == 1)}\n" for n, p in enumerate(probs, 1)))
        for n, (level, bow) in enumerate(zip(probs, bows, strict=True), 1):
            f.write(f"\n\\{n}-grams:\n")
            level = {**level, (_BOS,): 0.0} if n == 1 else level  # <s>: a context, never predicted
            for g in sorted(level):
                p = level[g]
                text = f"{math.log10(p):.6f}" if p > 0 else "-99"
                text += "\t" + " ".join([words[i] for i in g])
                f.write(text + (f"\t{math.log10(bow[g]):.6f}\n" if g in bow else "\n"))
        f.write("\n\\end\\\n")
        f.flush()
        f.detach()
        if gz:
            gz.close()


def build_arpa(lines: Iterable[str], order: int = 3, out: str | Path | None = None, *,
               min_count: int = 1, vocab_size: int | None = None) -> NgramStats:
    """Estimate an interpolated modified Kneser-Ney model of `order` from text lines; write ARPA to `out`.

    Lines are normalised with `normalize_text` and split on whitespace; each becomes ``<s> ... </s>``.
    `vocab_size` keeps only the most frequent words (the rest become <unk>); `min_count` drops n-grams of
    order 2 and up whose adjusted count is below it (module doc). Without `out` only the statistics are
    computed. Raises ValueError on order < 1, a vocab_size or min_count below 1, or no words.
    """
    if order < 1:
        raise ValueError(f"n-gram order must be at least 1, got {order}")
    if min_count < 1 or (vocab_size is not None and vocab_size < 1):
        raise ValueError(f"min_count and vocab_size must be at least 1, got {min_count} and {vocab_size}")
    sentences = _sentences(lines)
    if not sentences:
        raise ValueError("no words to build a language model from: every line is empty after normalisation")
    frequency = Counter(w for s in sentences for w in s)
    frequency.pop(UNK, None)
    # Ties at the vocabulary's edge broken alphabetically, so the same text always gives the same model.
    chosen = sorted(frequency, key=lambda w: (-frequency[w], w))[:vocab_size]
    words = [UNK, BOS, EOS, *sorted(chosen)]
    ids = {w: i for i, w in enumerate(words)}
    encoded = [[ids.get(w, _UNK) for w in s] for s in sentences]
    n_words = sum(map(len, sentences))
    del sentences  # the encoded copy is what counting needs; this one is gigabytes on a large text
    vocab_size = len(words) - 1  # all but <s>
    probs, bows, discounts, fallback = _estimate(_adjusted_counts(encoded, order), vocab_size, min_count)
    if out is not None:
        _write_arpa(out, words, probs, bows)
    return NgramStats(order=order, sentences=len(encoded), words=n_words,
                      vocab_size=vocab_size, ngrams=[len(p) + (n == 0) for n, p in enumerate(probs)],
                      discounts=discounts, fallback=fallback)


def _arpa_entries(path: str | Path, max_order: int | None = None):
    """Yield (n, words, log10 prob, log10 backoff) from an ARPA file, plain or gzipped."""
    path = Path(path)
    try:
        f = gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")
        with f:
            n = 0
            for line in f:
                line = line.strip()
                if line.startswith("\\") and line.endswith("-grams:"):
                    n = int(line[1:-7])
                    if max_order is not None and n > max_order:
                        return
                elif line == "\\end\\":
                    return
                elif n and line:
                    parts = line.split()
                    yield n, tuple(parts[1:n + 1]), float(parts[0]), float(parts[n + 1]) if len(parts) > n + 1 else 0.0
    except (OSError, UnicodeDecodeError, ValueError, IndexError, EOFError) as e:
        raise InputError(f"{path}: not a readable ARPA language model ({e})") from None
    if not n:
        raise InputError(f"{path}: not an ARPA language model (no \\1-grams: section)")


def is_arpa(path: str | Path) -> bool:
    """Whether `path` looks like an ARPA file (plain or gzipped) rather than, e.g., a KenLM binary."""
    try:
        f = gzip.open(path, "rb") if Path(path).suffix == ".gz" else open(path, "rb")
        with f:
            head = f.read(4096)
    except (OSError, EOFError):
        return False
    return b"\\data\\" in head


def read_arpa_vocab(path: str | Path) -> list[str]:
    """The unigram words of an ARPA file (plain or .gz), without <s>, </s> and <unk>, in file order."""
    return [w[0] for _, w, _, _ in _arpa_entries(path, max_order=1) if w[0] not in (BOS, EOS, UNK)]


class ArpaModel:
    """An ARPA model in memory, queried by backoff; all scores are log10, unknown words score as <unk>."""

    def __init__(self, ngrams: dict[tuple[str, ...], tuple[float, float]]):
        self.ngrams = ngrams  # words -> (log10 prob, log10 backoff)
        self.order = max(map(len, ngrams))

    @classmethod
    def load(cls, path: str | Path) -> ArpaModel:
        return cls({w: (p, b) for _, w, p, b in _arpa_entries(path)})

    def _known(self, word: str) -> str:
        return word if (word,) in self.ngrams else UNK

    def log10_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """log10 p(word | context): the longest listed n-gram, plus the backoffs of the longer contexts."""
        context = tuple(map(self._known, context))[-(self.order - 1):] if self.order > 1 else ()
        word, backoff = self._known(word), 0.0
        for start in range(len(context) + 1):
            h = context[start:]
            if (entry := self.ngrams.get((*h, word))) is not None:
                return backoff + entry[0]
            backoff += self.ngrams.get(h, (0.0, 0.0))[1]
        raise InputError(f"the language model lists no {UNK} unigram to score {word!r} with")

    def sentence_logprob(self, words: str | Sequence[str]) -> float:
        """log10 p(words </s> | <s>); a string is normalised and split first."""
        words = normalize_text(words).split() if isinstance(words, str) else list(words)
        tokens = [BOS, *words, EOS]
        return sum(self.log10_prob(tokens[i], tokens[max(0, i - self.order + 1):i]) for i in range(1, len(tokens)))

    def perplexity(self, lines: Iterable[str]) -> float:
        """10 ** (-log10 p / N) over non-empty lines, N counting every word and each </s>."""
        logprob, count = 0.0, 0
        for words in _sentences(lines):
            logprob += self.sentence_logprob(words)
            count += len(words) + 1
        if not count:
            raise ValueError("no words to compute a perplexity on")
        return 10 ** (-logprob / count)
