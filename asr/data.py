"""Manifests, the training dataset, padding and duration-bucketed batching.

A manifest is JSON Lines, one utterance a line:
``{"id": "...", "audio": "path", "duration": 3.2, "text": "...", "speaker": "..."}``;
``audio`` is relative to the manifest's folder or absolute; NeMo's ``audio_filepath`` is accepted.

Dimensions: B batch, T frames, F mel bins, L target tokens (summed over the batch).
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.atomic import atomic_write_text
from asr.errors import InputError


@dataclass
class Utterance:
    id: str
    audio: str  # absolute path
    duration: float
    text: str = ""
    speaker: str | None = None


def read_manifest(path: str | Path) -> tuple[list[Utterance], list[str]]:
    """-> (utterances, problems). Lines that cannot be used are skipped and described in `problems`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest")
    utts, problems, seen = [], [], set()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    # Split at newlines only: str.splitlines() also breaks at U+2028, U+0085 and others, which JSON strings
    # may hold (write_manifest writes them unescaped). Lines are decoded one by one, so that one line in
    # another encoding costs that line, not the manifest.
    for n, data in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):  # tolerate a byte-order mark
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(f"{path}:{n}: not UTF-8 text ({e.reason} at byte {e.start} of the line)")
            continue
        if not line.strip():
            continue
        try:
            utt = _parse_line(line, path.parent.resolve())  # Utterance.audio is absolute
        except ValueError as e:
            problems.append(f"{path}:{n}: {e}")
            continue
        if utt.id in seen:
            problems.append(f"{path}:{n}: duplicate id {utt.id!r}")
            continue
        seen.add(utt.id)
        utts.append(utt)
    return utts, problems


def _parse_line(line: str, base: Path) -> Utterance:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    audio = row.get("audio", row.get("audio_filepath"))
    if not isinstance(audio, str) or not audio:
        raise ValueError("no 'audio' path")
    if "\0" in audio:
        raise ValueError("the 'audio' path contains a NUL character")
    audio_path = Path(audio) if os.path.isabs(audio) else base / audio
    raw = row.get("duration")
    try:
        duration = float("nan") if raw is None or isinstance(raw, bool) else float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float range
        raise ValueError(f"duration {reprlib.repr(raw)} is not a finite number") from None
    if not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"missing or invalid duration {reprlib.repr(raw)}")
    text = row.get("text", "")
    if not isinstance(text, str):
        raise ValueError("'text' is not a string")
    uid, speaker = row.get("id"), row.get("speaker")
    for name, value in (("id", uid), ("speaker", speaker)):
        if isinstance(value, (dict, list)):
            raise ValueError(f"'{name}' is not a string or number")
    for name, value in (("audio", audio), ("text", text), ("id", uid), ("speaker", speaker)):
        # JSON escapes can make lone surrogates, which no output file could be written with.
        if isinstance(value, str) and not _is_unicode(value):
            raise ValueError(f"'{name}' holds a lone surrogate (\\ud800-\\udfff), not text")
    return Utterance(audio_path.stem if uid is None else str(uid), str(audio_path), duration, text,
                     None if speaker is None else str(speaker))


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def write_manifest(path: str | Path, utts: list[Utterance]) -> None:
    """Atomic write; audio paths under the manifest's folder are stored relative to it."""
    path = Path(path)
    base = path.parent.resolve()
    lines = []
    for u in utts:
        audio = Path(u.audio).resolve()
        rel = audio.relative_to(base) if audio.is_relative_to(base) else audio
        row = {"id": u.id, "audio": str(rel), "duration": round(u.duration, 3), "text": u.text}
        if u.speaker is not None:
            row["speaker"] = u.speaker
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(path, "".join(line + "\n" for line in lines))


class SpeechDataset(torch.utils.data.Dataset):
    """Features computed on the fly (in DataLoader workers) from each utterance's audio.

    An unreadable file yields an item with an ``error`` instead of raising, so that one bad file
    costs one utterance, not the run; `collate` drops it and reports it.
    """

    def __init__(self, utts: list[Utterance], features, tokenizer, spec_augment=None, seed: int = 0,
                 wave_augment: list | None = None, augment_ramp: int = 0):
        """`wave_augment`: callables (waveform, generator) -> waveform, applied in order (speed, noise).

        `augment_ramp`: in the first that many epochs, `wave_augment` touches only a growing share of the
        utterances, (epoch + 1) / (augment_ramp + 1) of them, and the rest stay as recorded; from then on,
        all. Each utterance makes one extra random draw for it during the ramp only, so afterwards its
        draws (and the epochs) are those of a run without a ramp. SpecAugment is not ramped.
        """
        if augment_ramp < 0:
            raise ValueError(f"the augmentation ramp must be 0 or more epochs, got {augment_ramp}")
        self.utts, self.features, self.tokenizer = utts, features, tokenizer
        self.spec_augment, self.seed, self.epoch = spec_augment, seed, 0
        self.wave_augment, self.augment_ramp = wave_augment or [], augment_ramp

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> dict:
        from asr.audio import load_audio

        utt = self.utts[i]
        try:
            wave = load_audio(utt.audio)
        except InputError as e:
            return {"id": utt.id, "error": str(e)}
        # Every random draw is seeded by (seed, epoch, index): reproducible whatever worker runs it.
        gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFF_FFFF)
        for augment in self.wave_augment if self._augments(gen) else ():
            wave = augment(wave, gen)
        feats = self.features(wave)
        if self.spec_augment is not None:
            feats = self.spec_augment(feats, gen)
        targets = torch.tensor(self.tokenizer.encode(utt.text), dtype=torch.long)
        return {"id": utt.id, "feats": feats, "targets": targets, "text": utt.text}

    def augment_share(self) -> float:
        """The share of this epoch's utterances that `wave_augment` touches (1 once the ramp is over)."""
        return min(1.0, (self.epoch + 1) / (self.augment_ramp + 1))

    def _augments(self, gen: torch.Generator) -> bool:
        share = self.augment_share()
        return bool(self.wave_augment) and (share >= 1.0 or float(torch.rand(1, generator=gen)) < share)


@dataclass
class Batch:
    ids: list[str]
    feats: torch.Tensor  # (B, T, F), zero-padded
    lengths: torch.Tensor  # (B,)
    targets: torch.Tensor  # (L,), concatenated
    target_lengths: torch.Tensor  # (B,)
    texts: list[str]
    skipped: list[tuple[str, str]]  # (id, error) of items dropped from this batch


def collate(items: list[dict]) -> Batch:
    good = [it for it in items if "error" not in it]
    skipped = [(it["id"], it["error"]) for it in items if "error" in it]
    n_mels = good[0]["feats"].shape[1] if good else 0
    lengths = torch.tensor([it["feats"].shape[0] for it in good], dtype=torch.long)
    feats = torch.zeros(len(good), int(lengths.max()) if good else 0, n_mels)
    for j, it in enumerate(good):
        feats[j, : it["feats"].shape[0]] = it["feats"]
    targets = torch.cat([it["targets"] for it in good]) if good else torch.zeros(0, dtype=torch.long)
    target_lengths = torch.tensor([len(it["targets"]) for it in good], dtype=torch.long)
    return Batch([it["id"] for it in good], feats, lengths, targets, target_lengths,
                 [it["text"] for it in good], skipped)


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of similar duration, each holding at most `max_seconds` of padded audio.

    Utterances are sorted by duration (jittered by ±10 % per epoch so batches change between
    epochs), cut into batches whose size x longest duration stays within `max_seconds`, and the
    batch order is shuffled each epoch (optionally not in the first, which then runs shortest
    first). Sorting keeps padding, and so wasted compute, small. With `num_replicas` > 1 (DDP), each
    rank gets disjoint batches and all ranks the same number of them.
    """

    def __init__(self, durations: list[float], max_seconds: float, shuffle: bool = True, seed: int = 0,
                 sorted_first_epoch: bool = False, num_replicas: int = 1, rank: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.durations, self.max_seconds = durations, max_seconds
        self.shuffle, self.seed, self.epoch, self.start_batch = shuffle, seed, 0, 0
        self.sorted_first_epoch = sorted_first_epoch
        self.num_replicas, self.rank = num_replicas, rank

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's batch order; `start_batch` skips the batches a resumed run already trained on."""
        self.epoch, self.start_batch = epoch, start_batch

    def _batches(self) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        durations = torch.tensor(self.durations, dtype=torch.float64)
        if self.shuffle:
            durations = durations * (1 + 0.2 * (torch.rand(len(durations), generator=gen, dtype=torch.float64) - 0.5))
        order = torch.argsort(durations, stable=True).tolist()
        batches, current, longest = [], [], 0.0
        for i in order:
            d = self.durations[i]
            if current and max(longest, d) * (len(current) + 1) > self.max_seconds:
                batches.append(current)
                current, longest = [], 0.0
            current.append(i)
            longest = max(longest, d)
        if current:
            batches.append(current)
        # SortaGrad (DeepSpeech2): short utterances first in the first epoch helps CTC find alignments.
        if self.shuffle and not (self.sorted_first_epoch and self.epoch == 0):
            batches = [batches[j] for j in torch.randperm(len(batches), generator=gen).tolist()]
        if self.num_replicas > 1:
            # Every rank builds the same list (same seed and epoch) and takes every num_replicas-th
            # batch. The list is first padded by repeating its head so that all ranks get the same
            # number of steps, which DDP needs: a rank that ran out early would hang the others.
            pad = -len(batches) % self.num_replicas
            batches = (batches + batches[:pad])[self.rank :: self.num_replicas]
        return batches

    def __iter__(self):
        return iter(self._batches()[self.start_batch :])

    def __len__(self) -> int:
        """Batches in a whole epoch (the learning-rate schedule counts on it), skipped ones included."""
        return len(self._batches())
