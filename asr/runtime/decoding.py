"""CTC decoding over numpy arrays, with the results of `asr.decoding` and `asr.alignment` (tests compare them).

- greedy: argmax per frame, runs merged, blanks dropped (`greedy_decode`);
- beam search: flashlight-text's decoders called directly (torchaudio's `ctc_decoder` is a thin wrapper
  over the same ones, built here with the same options, trie and dictionaries), with the lexicon, KenLM
  and the padding frame of `asr.decoding` reused as they are (`beam_decode`);
- word times and confidences from the CTC path (`from_path`; grouping into words is `asr.alignment`'s),
  the path after beam search found by forced alignment (`align`).

Every decoder has the signature ``decode(log_probs (B, T, V), lengths (B,), tokenizer, frame_seconds)``
-> one `asr.alignment.Hypothesis` per utterance. Dimensions: B batch, T output frames, V vocabulary.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from asr.alignment import Hypothesis, _words, fits
from asr.decoding import (
    BeamOptions,
    _boosted_lm,
    _distinct,
    _kenlm_errors,
    _quiet_stderr,
    _searched,
    _silence_token,
    _spell,
    _token_lm_dict,
    beam_options,
    best_hypotheses,
    lexicon_entries,
    load_word_lm,
    token_name,
)
from asr.decoding import _clean as clean_tokens
from asr.errors import InputError
from asr.text import BLANK


def greedy_decode(log_probs: np.ndarray, lengths: np.ndarray, tokenizer,
                  frame_seconds: float = 0.04) -> list[Hypothesis]:
    """Best path: argmax per frame, merge repeats, drop blanks."""
    best = log_probs.argmax(axis=-1)  # (B, T)
    return [from_path(best[i, : int(n)], log_probs[i, : int(n)], tokenizer, frame_seconds)
            for i, n in enumerate(np.asarray(lengths).tolist())]


def from_path(path: np.ndarray, log_probs: np.ndarray, tokenizer, frame_seconds: float) -> Hypothesis:
    """Hypothesis from a CTC path (T,) of frame labels, as `asr.alignment.from_path`: a token per run of equal
    non-blank labels, its span that run, its confidence the mean posterior of its label over the run."""
    path = np.asarray(path, dtype=np.int64)
    change = np.ones(len(path), dtype=bool)
    change[1:] = path[1:] != path[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(path))
    keep = path[starts] != BLANK
    starts, ends = starts[keep].tolist(), ends[keep].tolist()
    tokens = path[starts].tolist()
    probs = np.exp(np.take_along_axis(log_probs, path[:, None], axis=1)[:, 0])  # (T,) posterior of the path's label
    confs = [float(probs[s:e].mean()) for s, e in zip(starts, ends, strict=True)]
    words = _words(tokens, list(zip(starts, ends, strict=True)), confs, tokenizer, frame_seconds)
    return Hypothesis(tokenizer.decode(tokens), tokens, starts, words)


def align(log_probs: np.ndarray, tokens: list[int]) -> np.ndarray:
    """(T,) frame labels of the best CTC path that spells `tokens` (all blank when there are none): Viterbi
    over the CTC topology (blank, token, blank, ..., token, blank).

    Hand-written because no library in the runtime's dependencies aligns (torchaudio's `forced_align` is the
    PyTorch path's). It keeps that implementation's arithmetic and tie-breaking so that the paths are the
    same: float32 sums in the same order, a skip taken only when strictly better than both the stay and the
    step, a step only when strictly better than both, the path ending on the last token unless the final
    blank scores strictly higher. States that cannot reach the end, which it prunes, never lie on the best
    path, so the full recursion over all states finds the same one.
    """
    num_frames = log_probs.shape[0]
    if not tokens:
        return np.zeros(num_frames, dtype=np.int64)
    if not fits(tokens, num_frames):
        raise ValueError(f"{len(tokens)} tokens do not fit a CTC path of {num_frames} frames")
    labels = np.zeros(2 * len(tokens) + 1, dtype=np.int64)  # (S,): blank, t1, blank, t2, ..., blank
    labels[1::2] = tokens
    states = len(labels)
    skip = np.zeros(states, dtype=bool)  # a token state reachable from two states back: not after the same token
    skip[3::2] = labels[3::2] != labels[1:-2:2]
    emissions = np.asarray(log_probs, dtype=np.float32)[:, labels]  # (T, S)
    # Each frame's three ways into every state: [0] stay at s, [1] step from s-1, [2] skip from s-2; the
    # rows' first entries, and [2] where no skip is allowed, stay -inf. One buffer, one argmax a frame:
    # 1.5x the speed of choosing with comparisons and np.where.
    candidates = np.full((3, states), -np.inf, dtype=np.float32)
    columns = np.arange(states)
    alpha = np.full(states, -np.inf, dtype=np.float32)
    alpha[:2] = emissions[0, :2]
    moves = np.zeros((num_frames, states), dtype=np.int8)  # 0 stay, 1 step from s-1, 2 skip from s-2
    for t in range(1, num_frames):
        candidates[0] = alpha
        candidates[1, 1:] = alpha[:-1]
        np.copyto(candidates[2, 2:], alpha[:-2], where=skip[2:])
        move = candidates.argmax(axis=0)  # the first of equals: stay before step before skip
        move[(move == 1) & (candidates[1] == candidates[2])] = 0  # a step that only ties the skip: stay
        moves[t] = move
        alpha = candidates[move, columns] + emissions[t]
    state = states - 1 if alpha[-1] > alpha[-2] else states - 2
    path = np.empty(num_frames, dtype=np.int64)
    for t in range(num_frames - 1, -1, -1):
        path[t] = labels[state]
        state -= int(moves[t, state])  # an int: int8 arithmetic (NumPy 2) overflows past 127 states
    return path


def beam_decode(log_probs: np.ndarray, lengths: np.ndarray, tokenizer, frame_seconds: float = 0.04,
                options: BeamOptions | None = None) -> list[Hypothesis]:
    """CTC beam search with or without lexicon and LM, then forced alignment of the best tokens for the word
    times and confidences: `asr.decoding.beam_decode` step for step."""
    options = options or BeamOptions()
    emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
    found = beam_search(emissions, lengths, tokenizer, options)
    return best_hypotheses(found, emissions, lengths, tokenizer, frame_seconds, align, from_path)


def beam_search(log_probs: np.ndarray, lengths: np.ndarray, tokenizer,
                options: BeamOptions) -> list[list[tuple[list[int], float]]]:
    """The search alone (`asr.decoding.beam_search`): for each utterance up to `options.nbest` (token ids, score)."""
    search = _decoder(tokenizer, options)
    emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
    lengths = np.asarray(lengths, dtype=np.int64)
    sil = _silence_token(tokenizer.tokens)
    if options.uses_lexicon and tokenizer.tokens[sil] == " ":  # a frame that is certainly "|": see lexicon_entries
        emissions = np.pad(emissions, ((0, 0), (0, 1), (0, 0)))
        rows = np.arange(len(lengths))
        emissions[rows, lengths] = -1e4
        emissions[rows, lengths, sil] = 0.0
        lengths = lengths + 1
    found = []
    for b in range(len(lengths)):
        results = search.decoder.decode(emissions[b].ctypes.data, int(lengths[b]), emissions.shape[2])
        results = results[: _searched(options)]
        if options.uses_lexicon:
            spelled = [" ".join(search.word_dict.get_entry(w) for w in r.words if w >= 0) for r in results]
            found.append([(_spell(text, tokenizer), float(r.score)) for text, r in zip(spelled, results, strict=True)])
        else:
            found.append([(clean_tokens(_merged(r.tokens), sil, tokenizer), float(r.score)) for r in results])
    return [_distinct(candidates, options.nbest) for candidates in found]


def _merged(path) -> list[int]:
    """The tokens of a search path: runs merged, blanks dropped (torchaudio's CTCDecoder._get_tokens)."""
    return [t for t, _ in itertools.groupby(path) if t != BLANK]


class _Search:
    """A flashlight decoder and what must outlive it (LM, trie, word dictionary)."""

    def __init__(self, decoder, lm, trie=None, word_dict=None):
        self.decoder, self.lm, self.trie, self.word_dict = decoder, lm, trie, word_dict


_SEARCHES: dict = {}  # (tokens, options) -> _Search; a few, since building one may load a large LM


def _decoder(tokenizer, options: BeamOptions) -> _Search:
    """flashlight's LexiconDecoder or LexiconFreeDecoder, built as torchaudio's `ctc_decoder` builds it from the
    arguments `asr.decoding._beam_decoder` gives it."""
    key = (tuple(tokenizer.tokens), options)
    if key in _SEARCHES:
        return _SEARCHES[key]
    from flashlight.lib.text import decoder as fl
    from flashlight.lib.text.dictionary import Dictionary

    if options.hotwords and not options.uses_lexicon:
        raise InputError("--hotword boosts words of a lexicon: give --lm (a word LM) or --lexicon too")
    while len(_SEARCHES) >= 4:
        _SEARCHES.pop(next(iter(_SEARCHES)))
    names = [token_name(t) for t in tokenizer.tokens]
    if len(set(names)) != len(names):
        raise ValueError("the tokenizer has both ' ' and '|' as tokens; beam search cannot tell them apart")
    tokens_dict = Dictionary(names)
    blank, sil = BLANK, _silence_token(tokenizer.tokens)
    common = dict(beam_size=options.beam_size, beam_size_token=options.beam_size_token or tokens_dict.index_size(),
                  beam_threshold=options.beam_threshold, lm_weight=options.lm_weight)
    with _quiet_stderr(), _kenlm_errors(options.lm):
        if options.uses_lexicon:
            extra = tuple(sorted({w for w, _ in options.hotwords}))
            spellings, kenlm, word_dict = _lexicon(tokenizer, options.lm, options.lexicon, extra)
            lm = kenlm if kenlm is not None else fl.ZeroLM()
            if options.hotwords:  # hotwords' boosts added to the LM's word scores, as on the PyTorch path
                lm, common["lm_weight"] = _boosted_lm(kenlm, word_dict, options)
            trie = _trie(tokens_dict.index_size(), spellings, lm, sil)
            decoder = fl.LexiconDecoder(
                fl.LexiconDecoderOptions(**common, word_score=options.word_score, unk_score=options.unk_score,
                                         sil_score=0.0, log_add=True, criterion_type=fl.CriterionType.CTC),
                trie, lm, sil, blank, word_dict.get_index("<unk>"), [], False)
            search = _Search(decoder, lm, trie, word_dict)
        else:
            lm = fl.ZeroLM()
            if options.lm is not None:  # a KenLM over the tokens, listed in id order (see _token_lm_dict)
                from flashlight.lib.text.decoder.kenlm import KenLM

                lm = KenLM(options.lm, Dictionary(_token_lm_dict(tuple(names))))
            decoder = fl.LexiconFreeDecoder(
                fl.LexiconFreeDecoderOptions(**common, sil_score=0.0, log_add=True,
                                             criterion_type=fl.CriterionType.CTC),
                lm, sil, blank, [])
            search = _Search(decoder, lm)
    _SEARCHES[key] = search
    return search


@functools.lru_cache(maxsize=2)
def _lexicon(tokenizer, lm_path: str | None, lexicon: str | None, extra_words: tuple[str, ...]):
    """(spellings, word KenLM or None, word dictionary) for the search: word i of the dictionary is
    spelled by the token-id lists spellings[i]. As `asr.decoding._lexicon_resources` gives torchaudio, built
    in memory: writing the lexicon to a file for flashlight's `load_words` and converting its map to Python
    and back took 0.3 s of a 0.7-s start. The words are numbered in lexicon order, <unk> last (the PyTorch
    path numbers them in the order of flashlight's hash map, which changes no score)."""
    from flashlight.lib.text.dictionary import Dictionary

    # Token ids from a Python dict, not a call into flashlight per letter: 50,000 words took 0.53 s, 0.3 s of
    # it in those calls, most of the runtime's start-up once the LM was a binary one.
    token_ids = {token_name(t): i for i, t in enumerate(tokenizer.tokens)}
    spellings: dict[str, list[list[int]]] = {}
    for word, spelling in lexicon_entries(tokenizer, lm_path, lexicon, extra_words):
        if word != "<unk>":  # flashlight's loader gives <unk> no spelling either
            spellings.setdefault(word, []).append([token_ids[token] for token in spelling])
    word_dict = Dictionary([*spellings, "<unk>"])
    word_dict.set_default_index(word_dict.get_index("<unk>"))
    return list(spellings.values()), load_word_lm(lm_path, word_dict), word_dict


def _trie(num_tokens: int, spellings: list[list[list[int]]], lm, silence: int):
    """The lexicon as a trie of token ids, each word (id i: `spellings[i]`) scored by the LM's unigram,
    smeared by max (torchaudio's)."""
    from flashlight.lib.text.decoder import SmearingMode, Trie

    trie = Trie(num_tokens, silence)
    start = lm.start(False)
    for index, word_spellings in enumerate(spellings):
        _, score = lm.score(start, index)
        for spelling in word_spellings:
            trie.insert(spelling, index, score)
    trie.smear(SmearingMode.MAX)
    return trie


def decoder_from_settings(settings: dict, base_dir=None):
    """A decoder from settings (`asr.decoding.decoder_from_settings`'s keys and rules) -> (decode, settings
    with `decoder` filled in)."""
    from asr.decoding import SETTINGS

    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown decoder settings: {', '.join(sorted(unknown))}")
    settings = dict(settings)
    name = settings.pop("decoder", None) or ("beam" if settings.get("lm") or settings.get("lexicon") else "greedy")
    if name == "greedy":
        if settings.get("hotwords"):
            raise InputError("--hotword needs beam search: drop --decoder greedy")
        return greedy_decode, {"decoder": "greedy", **settings}
    if name != "beam":
        raise ValueError(f"unknown decoder {name!r}: greedy or beam")
    # JSON has lists where a checkpoint had tuples; BeamOptions keys a cache, so it must hash
    settings["hotwords"] = tuple((str(w), float(b)) for w, b in settings.get("hotwords") or ())
    options = beam_options(settings, base_dir)
    return functools.partial(beam_decode, options=options), {"decoder": "beam", **settings}
