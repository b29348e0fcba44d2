"""CTC decoding: (log-probs, lengths) -> hypotheses with text, tokens, word times and confidences.

Dimensions: B batch, T output frames, V vocabulary (blank = 0).
Every decoder is a plain function ``decode(log_probs, lengths, tokenizer, frame_seconds)`` returning
one ``Hypothesis`` per utterance, so decoders are interchangeable; `make_decoder` builds one from
command-line settings (`BeamOptions`).

Beam search is flashlight-text's, through torchaudio's ``ctc_decoder``: lexicon-free, or restricted
to the words of a lexicon and scored with a KenLM n-gram model (ARPA, gzipped ARPA or KenLM binary).
With a word LM and no lexicon file, the lexicon is the LM's vocabulary spelled with the model's
tokenizer (`lexicon_from_words`).

Word times and confidences come from the CTC alignment of the final token sequence (`asr.alignment`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from asr.alignment import Hypothesis, align, fits, from_path
from asr.errors import InputError
from asr.text import BLANK

if TYPE_CHECKING:  # torch is imported where it is used: asr.runtime uses this module without it
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BeamOptions:
    """Settings of `beam_decode`. `lm` is a KenLM file (.arpa, .arpa.gz or binary) over words (with a
    lexicon) or over the tokenizer's symbols (with ``lexicon_free``). `lexicon` is a file of
    ``word token token ...`` lines; None with a word LM derives it from the LM's vocabulary."""

    beam_size: int = 50
    beam_threshold: float = 25.0
    beam_size_token: int | None = None  # tokens tried per frame; None = all
    lm: str | None = None
    lexicon: str | None = None
    lexicon_free: bool = False  # with an LM: the LM is over tokens, words are unconstrained
    lm_weight: float = 1.0  # `asr lm tune` finds the right one for a model and LM
    word_score: float = 0.0
    unk_score: float = -math.inf  # lexicon decoding: score of a word outside the lexicon (-inf: never)
    nbest: int = 1
    hotwords: tuple[tuple[str, float], ...] = ()  # (word, boost added to its score); needs lm or lexicon

    @property
    def uses_lexicon(self) -> bool:
        return not self.lexicon_free and (self.lexicon is not None or self.lm is not None)


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer,
                  frame_seconds: float = 0.04) -> list[Hypothesis]:
    """Best path: argmax per frame, merge repeats, drop blanks. Batched over B."""
    best = log_probs.detach().argmax(dim=-1).cpu()  # (B, T)
    lp = log_probs.detach().float().cpu()
    return [from_path(best[i, : int(n)], lp[i, : int(n)], tokenizer, frame_seconds)
            for i, n in enumerate(lengths.tolist())]


def beam_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer, frame_seconds: float = 0.04,
                beam_size: int = 50, beam_threshold: float = 25.0,
                options: BeamOptions | None = None) -> list[Hypothesis]:
    """CTC beam search (flashlight-text through torchaudio), with or without lexicon and LM.

    Hypotheses that reach the same prefix are merged by summing their probabilities (log_add), as
    CTC defines a label sequence's probability, rather than keeping the better of the two.

    The search returns tokens only; where each token is emitted comes from CTC forced alignment of
    that token sequence (the Viterbi path), so words get times and confidences exactly as on the
    greedy path. With beam_size=1 and no LM the result equals `greedy_decode` (a test checks it).
    """
    options = options or BeamOptions(beam_size=beam_size, beam_threshold=beam_threshold)
    emissions = log_probs.detach().float().cpu().contiguous()
    found = beam_search(emissions, lengths, tokenizer, options)
    return best_hypotheses(found, emissions, lengths, tokenizer, frame_seconds, align, from_path)


def best_hypotheses(found: list, emissions, lengths, tokenizer, frame_seconds: float, align_tokens,
                    path_hypothesis) -> list[Hypothesis]:
    """Each utterance's best candidate of the search (`beam_search`'s) as a Hypothesis, its words' times and
    confidences from the CTC path that `align_tokens` finds for its tokens, the rest of its candidates the
    n-best. Shared with the torch-free runtime, which passes its numpy `align` and `from_path`."""
    hyps = []
    for i, candidates in enumerate(found):
        lp = emissions[i, : int(lengths[i])]
        tokens, score = candidates[0] if candidates else ([], None)
        if not fits(tokens, lp.shape[0]):  # words the search put side by side, in frames too few for a separator
            tokens = [t for t in tokens if tokenizer.tokens[t] != " "]
        hyp = path_hypothesis(align_tokens(lp, tokens), lp, tokenizer, frame_seconds)
        hyp.text, hyp.score = tokenizer.decode(candidates[0][0]) if candidates else "", score
        hyp.alternatives = [(tokenizer.decode(t), s) for t, s in candidates[1:]]
        hyps.append(hyp)
    return hyps


def beam_search(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer,
                options: BeamOptions) -> list[list[tuple[list[int], float]]]:
    """The search alone: for each utterance, up to `options.nbest` (token ids, score), best first."""
    import torch

    decoder = _beam_decoder(tokenizer, options)
    emissions = log_probs.detach().float().cpu()
    lengths = lengths.detach().cpu().to(torch.int32)
    sil = _silence_token(tokenizer.tokens)
    if options.uses_lexicon and tokenizer.tokens[sil] == " ":  # see lexicon_entries
        emissions = torch.nn.functional.pad(emissions, (0, 0, 0, 1))
        emissions[torch.arange(len(lengths)), lengths.long()] = -1e4
        emissions[torch.arange(len(lengths)), lengths.long(), sil] = 0.0
        lengths = lengths + 1
    results = decoder(emissions.contiguous(), lengths)
    if not options.uses_lexicon:
        found = [[(_clean(r.tokens.tolist(), sil, tokenizer), float(r.score)) for r in nbest] for nbest in results]
    else:
        # With a lexicon the words are the result: the search may put two words side by side without the
        # separator token ("b" "b"), so the tokens are the words' spelling, separated as the model would.
        found = [[(_spell(" ".join(r.words), tokenizer), float(r.score)) for r in nbest] for nbest in results]
    return [_distinct(candidates, options.nbest) for candidates in found]


def _distinct(candidates: list[tuple[list[int], float]], n: int) -> list[tuple[list[int], float]]:
    """The first `n` candidates that spell different token sequences. The search's hypotheses differ in
    their paths (blanks, silences), so several may spell one transcript: of 3 asked for, 1 was often
    left; `_beam_decoder` asks for the whole beam when n > 1 for that reason."""
    seen, distinct = set(), []
    for tokens, score in candidates:
        if tuple(tokens) not in seen and len(distinct) < n:
            seen.add(tuple(tokens))
            distinct.append((tokens, score))
    return distinct


def _spell(text: str, tokenizer) -> list[int]:
    with _uncounted(tokenizer):
        return tokenizer.encode(text)


@contextlib.contextmanager
def _uncounted(tokenizer):
    """Encode lexicon and LM words without counting their unknown characters in `tokenizer.unknown`,
    which reports on transcript text."""
    saved = tokenizer.unknown.copy()
    try:
        yield
    finally:
        tokenizer.unknown.clear()
        tokenizer.unknown.update(saved)


def make_decoder(name: str = "greedy", beam_size: int = 50, options: BeamOptions | None = None):
    """-> decode(log_probs, lengths, tokenizer, frame_seconds) for `--decoder greedy|beam`."""
    if name == "greedy":
        return greedy_decode
    if name == "beam":
        options = replace(options or BeamOptions(), beam_size=beam_size)
        return functools.partial(beam_decode, options=options)
    raise ValueError(f"unknown decoder {name!r}: greedy or beam")


SETTINGS = ("decoder", "beam_size", "beam_threshold", "beam_size_token", "lm", "lexicon", "lexicon_free",
            "lm_weight", "word_score", "nbest", "hotwords")


def decoder_from_settings(settings: dict, base_dir: str | Path | None = None):
    """A decoder from a settings dict: what `asr lm tune --save` stores in a checkpoint's metadata
    ("decoder"), overridden key by key by command-line flags.

    Keys are those of `BeamOptions` plus ``decoder`` (greedy or beam; beam when an LM or lexicon is
    set and no decoder is named). Relative ``lm``/``lexicon`` paths are taken from `base_dir` (the
    checkpoint's folder) when the file is there. A missing file is an InputError naming it.
    """
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown decoder settings: {', '.join(sorted(unknown))}")
    settings = dict(settings)
    name = settings.pop("decoder", None) or ("beam" if settings.get("lm") or settings.get("lexicon") else "greedy")
    if name == "greedy":
        if settings.get("hotwords"):
            raise InputError("--hotword needs beam search: drop --decoder greedy")
        return greedy_decode
    options = beam_options(settings, base_dir)
    return make_decoder(name, options.beam_size, options)


def beam_options(settings: dict, base_dir: str | Path | None = None) -> BeamOptions:
    """`BeamOptions` from settings keys (those of `decoder_from_settings` less ``decoder``): relative
    ``lm``/``lexicon`` paths taken from `base_dir` where the file is there, hotwords normalised."""
    settings = dict(settings)
    for key in ("lm", "lexicon"):
        if settings.get(key):
            settings[key] = resolve_file(settings[key], base_dir, key)
    if settings.get("hotwords"):
        from asr.text import normalize_text

        settings["hotwords"] = tuple((normalize_text(str(w)), float(b)) for w, b in settings["hotwords"])
    options = BeamOptions(**settings)
    if options.lexicon_free and options.lexicon:
        raise InputError("a lexicon and lexicon-free decoding exclude each other")
    return options


def resolve_file(path: str, base_dir, what: str) -> str:
    """`path`, or `base_dir`/`path` when relative and there; InputError if it is no file. `what`:
    "lm" or "lexicon", for the message."""
    p = Path(path)
    if not p.is_absolute() and base_dir is not None and (Path(base_dir) / p).exists():
        p = Path(base_dir) / p
    if not p.is_file():
        raise InputError(f"{path}: {'language model' if what == 'lm' else 'lexicon'} file not found")
    return str(p)


def lexicon_from_words(words, tokenizer) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Spell each word with the tokenizer: -> ([(word, token names)], words it cannot spell).

    Characters: the word's letters. BPE: sentencepiece's segmentation of the word, which starts
    with a word-boundary piece. The word is spelled as transcripts are, after `normalize_text` (so
    the upper-case words of the LibriSpeech LMs work); one that normalises to several words or to a
    symbol the tokenizer lacks is left out.
    """
    from asr.text import normalize_text

    entries, unspellable = [], []
    with _uncounted(tokenizer):
        for word in words:
            tokenizer.unknown.clear()
            ids = tokenizer.encode(word)
            normal = normalize_text(word)
            if not ids or tokenizer.unknown or " " in normal or tokenizer.decode(ids) != normal:
                unspellable.append(word)
            else:
                entries.append((word, [token_name(tokenizer.tokens[i]) for i in ids]))
    return entries, unspellable


def _silence_token(tokens) -> int:
    """flashlight needs a word-separator token: the space for characters; for BPE, whose pieces carry
    their own word boundary, the unknown piece, which a trained model never emits."""
    return tokens.index(" ") if " " in tokens else 1


def token_name(token: str) -> str:
    """The name flashlight knows a token by: lexicon files are whitespace-separated, so the space
    token is called "|" (as in wav2vec 2.0 vocabularies)."""
    return "|" if token == " " else token


_DECODERS: dict = {}  # (tokens, options) -> decoder; a few, since building one may load a large LM
_TEMPORARY_FOLDERS: list = []  # TemporaryDirectory objects: removed when the interpreter exits


def _beam_decoder(tokenizer, options: BeamOptions):
    key = (tuple(tokenizer.tokens), options)
    if key not in _DECODERS:
        from asr.torchaudio_api import ctc_decoders

        while len(_DECODERS) >= 4:
            _DECODERS.pop(next(iter(_DECODERS)))
        names = [token_name(t) for t in tokenizer.tokens]
        if len(set(names)) != len(names):
            raise ValueError("the tokenizer has both ' ' and '|' as tokens; beam search cannot tell them apart")
        lm_dict, lm_weight = None, options.lm_weight
        if options.hotwords and not options.uses_lexicon:
            raise InputError("--hotword boosts words of a lexicon: give --lm (a word LM) or --lexicon too")
        if options.uses_lexicon:
            extra = tuple(sorted({w for w, _ in options.hotwords}))
            lexicon, lm, word_dict = _lexicon_resources(tokenizer, options.lm, options.lexicon, extra)
            if options.hotwords:
                lm, lm_weight = _boosted_lm(lm, word_dict, options)
        else:
            lexicon, lm = None, options.lm
            if lm is not None:
                lm_dict = _token_lm_dict(tuple(names))
        with _quiet_stderr(), _kenlm_errors(options.lm):
            decoder = ctc_decoders().ctc_decoder(
                lexicon=lexicon, tokens=names, lm=lm, lm_dict=lm_dict, nbest=_searched(options),
                beam_size=options.beam_size, beam_size_token=options.beam_size_token,
                beam_threshold=options.beam_threshold,
                lm_weight=lm_weight, word_score=options.word_score, unk_score=options.unk_score,
                log_add=True, blank_token=names[BLANK], sil_token=names[_silence_token(tokenizer.tokens)])
        _DECODERS[key] = decoder
    return _DECODERS[key]


def _searched(options: BeamOptions) -> int:
    """Hypotheses to take from the search for `options.nbest` distinct ones: all it keeps (see `_distinct`)."""
    return 1 if options.nbest <= 1 else max(options.nbest, options.beam_size)


@functools.lru_cache(maxsize=4)
def _token_lm_dict(names: tuple[str, ...]) -> str:
    """A file listing the tokens in id order, for a token-level LM. Without it torchaudio builds the
    LM's word dictionary in another order than the token ids, and lexicon-free search then scores
    every token as some other token."""
    return _temporary_file("tokens.txt", (f"{n}\n" for n in [*names, "<unk>"]))


def _temporary_file(name: str, lines) -> str:
    """Write `lines` to a file in a temporary folder that lives until the interpreter exits: torchaudio
    reads lexicons and LM dictionaries from files."""
    folder = tempfile.TemporaryDirectory(prefix="asr-decoder-")
    _TEMPORARY_FOLDERS.append(folder)
    path = os.path.join(folder.name, name)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return path


def lexicon_entries(tokenizer, lm_path: str | None, lexicon: str | None,
                    extra_words: tuple[str, ...] = ()) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The search's lexicon: (word, spelling in token names, separator included) for each entry of the
    `lexicon` file, or of the LM's words spelled by the tokenizer when there is none; `extra_words`
    (hotwords) join it. Entries with tokens the model lacks are left out with a warning. Not cached: its
    callers (`_lexicon_resources`, the runtime's `_lexicon`) cache what they build of it, and a cache here
    kept a second copy of the English lexicon (11 MB) alive for nothing."""
    known = {token_name(t) for t in tokenizer.tokens}
    if lexicon is not None:
        entries = list(_read_lexicon(lexicon, known))
    else:
        from asr.lm import is_arpa, read_arpa_vocab

        if not is_arpa(lm_path):
            raise InputError(f"{lm_path}: a binary KenLM model does not list its words; pass --lexicon "
                             "(or use the ARPA file)")
        words = read_arpa_vocab(lm_path)
        entries, unspellable = lexicon_from_words(words, tokenizer)
        if unspellable:
            log.warning("%d of %d LM words cannot be spelled with the model's tokens and are left out "
                        "(e.g. %s)", len(unspellable), len(words), ", ".join(unspellable[:5]))
    listed = {word for word, _ in entries}
    extra, unspellable = lexicon_from_words([w for w in extra_words if w not in listed], tokenizer)
    if unspellable:
        raise InputError(f"hotword {unspellable[0]!r} cannot be spelled with the model's tokens")
    entries += extra
    if not entries:
        raise ValueError(f"{lexicon or lm_path}: no word can be spelled with the model's tokens")
    # Character spellings end with the word separator "|", as in wav2vec 2.0 lexicons. flashlight-text 0.0.7
    # lets a one-token word restart on every frame that the model holds its token ("b" "b" "b" for one held
    # "b"), which CTC forbids; ending each word with "|" rules that out. The search then needs a "|" after the
    # last word too: `beam_search` appends one frame that is certainly "|". BPE has no separator token and
    # keeps the flaw for one-piece words.
    if " " not in tokenizer.tokens:
        return tuple((word, tuple(spelling)) for word, spelling in entries)
    return tuple((word, (*spelling, "|") if spelling[-1] != "|" else tuple(spelling)) for word, spelling in entries)


def load_word_lm(lm_path: str | None, word_dict):
    """KenLM over `word_dict`'s word ids (None without `lm_path`), its banner silenced, its errors InputErrors."""
    from flashlight.lib.text.decoder.kenlm import KenLM

    if not lm_path:
        return None
    with _quiet_stderr(), _kenlm_errors(lm_path):
        return KenLM(lm_path, word_dict)


@functools.lru_cache(maxsize=2)
def _lexicon_resources(tokenizer, lm_path: str | None, lexicon: str | None, extra_words: tuple[str, ...] = ()):
    """(lexicon file, loaded word KenLM or None, its word dictionary) shared by the decoders of every weight
    setting, so tuning loads the LM once. torchaudio's decoder reads the lexicon from a file and numbers the
    words as flashlight's `load_words` and `create_word_dict` do, so the LM gets its dictionary from the same."""
    from flashlight.lib.text.dictionary import create_word_dict, load_words

    entries = lexicon_entries(tokenizer, lm_path, lexicon, extra_words)
    path = _temporary_file("lexicon.txt", (f"{word}\t{' '.join(spelling)}\n" for word, spelling in entries))
    word_dict = create_word_dict(load_words(path))  # with the <unk> that flashlight's loader adds
    return path, load_word_lm(lm_path, word_dict), word_dict


def _boosted_lm(kenlm, word_dict, options: BeamOptions):
    """A word LM that adds each hotword's boost to the KenLM score (or to nothing, lexicon only), and
    the LM weight to give flashlight with it.

    flashlight multiplies LM scores by the LM weight, so the boost is divided by it here and lands
    on the hypothesis score as given. Without KenLM, or at LM weight 0 (a search constrained by the
    lexicon alone, which `asr lm tune` may choose), the boosts go in alone at weight 1. Written in
    Python as a subclass of flashlight's LM (torchaudio's CTCDecoderLM is one too, so both the PyTorch
    path and the torch-free runtime take it): it is called once per completed word, not per frame,
    which keeps it cheap.
    """
    from flashlight.lib.text.decoder import LM as CTCDecoderLM
    from flashlight.lib.text.decoder import LMState as CTCDecoderLMState

    if options.lm_weight < 0:
        raise InputError(f"--hotword needs an LM weight of 0 or more, got {options.lm_weight:g}")
    weight = options.lm_weight
    if kenlm is None or weight == 0:  # no LM probabilities to weigh: the boosts alone, at weight 1
        kenlm, weight = None, 1.0
    boosts = {word_dict.get_index(w): b / weight for w, b in options.hotwords}

    class BoostedLM(CTCDecoderLM):
        def __init__(self):
            CTCDecoderLM.__init__(self)
            self.states: dict = {}  # our state -> KenLM state (None without KenLM)

        def start(self, start_with_nothing: bool):
            state = CTCDecoderLMState()
            self.states = {state: kenlm.start(start_with_nothing) if kenlm else None}
            return state

        def score(self, state, usr_token_idx: int):
            child = state.child(usr_token_idx)
            base = 0.0
            if kenlm is not None:
                ken, base = kenlm.score(self.states[state], usr_token_idx)
                self.states.setdefault(child, ken)
            else:
                self.states.setdefault(child, None)
            return child, base + boosts.get(usr_token_idx, 0.0)

        def finish(self, state):
            child = state.child(-1)
            if kenlm is None:
                return child, 0.0
            ken, base = kenlm.finish(self.states[state])
            self.states.setdefault(child, ken)
            return child, base

    return BoostedLM(), weight


@contextlib.contextmanager
def _kenlm_errors(lm_path):
    """KenLM's load errors (a C++ exception text with a source path) -> InputError with its last line."""
    try:
        yield
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
        raise InputError(f"{lm_path}: KenLM cannot load this language model: {reason}") from None


@contextlib.contextmanager
def _quiet_stderr():
    """Silence KenLM's loading banner and progress bar, which it writes straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)



def _read_lexicon(path: str, known: set[str]):
    """Lines ``word tok tok ...``; entries with a token the model lacks are skipped with a warning."""
    skipped = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            if known.issuperset(parts[1:]):  # a set operation: per-token checks were a fifth of the runtime's start
                yield parts[0], parts[1:]
            else:
                skipped += 1
    if skipped:
        log.warning("%s: %d entries use tokens the model does not have and are left out", path, skipped)


def _clean(tokens: list[int], sil: int, tokenizer) -> list[int]:
    """The search's token sequence as the model would emit it: no blanks, no silence brackets, and
    (for BPE, whose silence is a stand-in) no silence at all."""
    keep_sil = tokenizer.tokens[sil] == " "
    out: list[int] = []
    for t in tokens:
        if t == BLANK or (t == sil and (not keep_sil or not out or out[-1] == sil)):
            continue
        out.append(t)
    while out and out[-1] == sil:
        out.pop()
    return out
