import json
import os
import random
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr.atomic import atomic_open, atomic_write_text
from asr.audio import SpecAugment
from asr.data import BucketBatchSampler, SpeechDataset, Utterance, collate, read_manifest, write_manifest
from asr.errors import InputError
from asr.text import CharTokenizer

# Manifests --------------------------------------------------------------------------------------


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_manifest_round_trip(tmp_path):
    corpus, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    utts = [
        Utterance("u1", str(corpus / "wav" / "a.wav"), 1.23456, "hello world", "spk1"),
        Utterance("u2", str(corpus / "b.flac"), 2.0, "caf\u00e9 \u00fcber", None),
        Utterance("u3", str(elsewhere / "c.wav"), 0.5, "", "spk2"),
    ]
    manifest = corpus / "train.jsonl"
    write_manifest(manifest, utts)

    rows = _lines(manifest)
    assert [r["audio"] for r in rows] == [os.path.join("wav", "a.wav"), "b.flac", str((elsewhere / "c.wav").resolve())]
    assert rows[0] == {"id": "u1", "audio": os.path.join("wav", "a.wav"), "duration": 1.235, "text": "hello world",
                       "speaker": "spk1"}
    assert "speaker" not in rows[1]
    assert "caf\u00e9 \u00fcber" in manifest.read_text(encoding="utf-8")  # not \u-escaped

    back, problems = read_manifest(manifest)
    assert problems == []
    assert [u.id for u in back] == ["u1", "u2", "u3"]
    assert [u.text for u in back] == [u.text for u in utts]
    assert [u.speaker for u in back] == ["spk1", None, "spk2"]
    assert [u.duration for u in back] == [1.235, 2.0, 0.5]
    for u, orig in zip(back, utts, strict=True):
        assert os.path.isabs(u.audio)
        assert Path(u.audio).resolve() == Path(orig.audio).resolve()


def test_manifest_written_atomically_leaves_no_temp_files(tmp_path):
    write_manifest(tmp_path / "m.jsonl", [Utterance("a", str(tmp_path / "a.wav"), 1.0, "x")])
    assert os.listdir(tmp_path) == ["m.jsonl"]


def test_read_manifest_by_relative_path_gives_absolute_audio_paths(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "m.jsonl").write_text(json.dumps({"id": "a", "audio": "wav/a.wav", "duration": 1}) + "\n")
    monkeypatch.chdir(tmp_path)
    utts, problems = read_manifest(Path("data") / "m.jsonl")
    assert problems == []
    assert os.path.isabs(utts[0].audio)
    assert Path(utts[0].audio) == (tmp_path / "data" / "wav" / "a.wav").resolve()


def test_read_manifest_accepts_nemo_keys(tmp_path):
    manifest = tmp_path / "nemo.json"
    rows = [{"audio_filepath": "/abs/one.wav", "duration": 3.5, "text": "one"},
            {"audio_filepath": "rel/two.wav", "duration": 1.25, "text": "two"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    utts, problems = read_manifest(manifest)
    assert problems == []
    assert [u.id for u in utts] == ["one", "two"]  # no id: the file name without its extension
    assert utts[0].audio == "/abs/one.wav"
    assert Path(utts[1].audio) == (tmp_path / "rel" / "two.wav").resolve()
    assert [u.duration for u in utts] == [3.5, 1.25]
    assert utts[0].speaker is None


def test_read_manifest_skips_and_reports_broken_lines(tmp_path):
    manifest = tmp_path / "m.jsonl"
    lines = [
        json.dumps({"id": "good1", "audio": "a.wav", "duration": 1.0, "text": "a"}),  # 1
        '{"id": "broken", "audio": ',  # 2 invalid JSON
        json.dumps({"id": "noaudio", "duration": 1.0, "text": "a"}),  # 3
        json.dumps({"id": "baddur", "audio": "b.wav", "duration": "long", "text": "a"}),  # 4
        json.dumps({"id": "negdur", "audio": "b.wav", "duration": -1, "text": "a"}),  # 5
        json.dumps({"id": "nodur", "audio": "b.wav", "text": "a"}),  # 6
        json.dumps({"id": "numtext", "audio": "b.wav", "duration": 1, "text": 5}),  # 7
        json.dumps({"id": "good1", "audio": "c.wav", "duration": 1.0, "text": "dup"}),  # 8 duplicate id
        "",  # 9 blank: ignored, not a problem
        "[1, 2]",  # 10 not an object
        json.dumps({"id": "zerodur", "audio": "b.wav", "duration": 0, "text": "a"}),  # 11
        json.dumps({"id": "nulldur", "audio": "b.wav", "duration": None, "text": "a"}),  # 12
        json.dumps({"id": "good2", "audio": "d.wav", "duration": 2.5, "text": "d"}),  # 13
    ]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")

    utts, problems = read_manifest(manifest)

    assert [u.id for u in utts] == ["good1", "good2"]
    assert utts[0].audio.endswith("a.wav")  # the first of the duplicates wins
    bad_lines = [2, 3, 4, 5, 6, 7, 8, 10, 11, 12]
    assert len(problems) == len(bad_lines)
    for n, problem in zip(bad_lines, problems, strict=True):
        assert problem.startswith(f"{manifest}:{n}: "), problem
    assert "invalid JSON" in problems[0]
    assert "audio" in problems[1]
    assert "duplicate" in problems[6] and "good1" in problems[6]


def test_a_line_in_another_encoding_costs_that_line_only(tmp_path):
    manifest = tmp_path / "m.jsonl"
    good = [json.dumps({"id": i, "audio": f"{i}.wav", "duration": 1.0, "text": "caf\u00e9"}, ensure_ascii=False)
            for i in ("a", "b")]
    latin = json.dumps({"id": "c", "audio": "c.wav", "duration": 1.0, "text": "caf\u00e9"}, ensure_ascii=False)
    manifest.write_bytes(b"\xef\xbb\xbf" + good[0].encode() + b"\n" + latin.encode("latin-1") + b"\n"
                         + good[1].encode() + b"\n")
    utts, problems = read_manifest(manifest)
    assert [(u.id, u.text) for u in utts] == [("a", "caf\u00e9"), ("b", "caf\u00e9")]
    assert len(problems) == 1 and problems[0].startswith(f"{manifest}:2: not UTF-8 text")


def test_read_missing_manifest(tmp_path):
    path = tmp_path / "absent.jsonl"
    with pytest.raises(InputError, match="absent.jsonl"):
        read_manifest(path)
    with pytest.raises(InputError, match=str(tmp_path)):
        read_manifest(tmp_path)  # a directory


# collate ----------------------------------------------------------------------------------------


def _item(uid: str, frames: int, targets: list[int], bins: int = 5) -> dict:
    feats = torch.arange(1, frames * bins + 1, dtype=torch.float32).reshape(frames, bins)
    return {"id": uid, "feats": feats, "targets": torch.tensor(targets), "text": f"text {uid}"}


def test_collate_pads_and_concatenates():
    items = [_item("a", 3, [1, 2]), {"id": "bad", "error": "bad.wav: cannot read audio"},
             _item("b", 7, [3]), _item("c", 1, [4, 5, 6])]
    batch = collate(items)
    assert batch.ids == ["a", "b", "c"]
    assert batch.texts == ["text a", "text b", "text c"]
    assert batch.feats.shape == (3, 7, 5)
    assert batch.lengths.tolist() == [3, 7, 1]
    for j, it in enumerate(x for x in items if "error" not in x):
        n = it["feats"].shape[0]
        assert torch.equal(batch.feats[j, :n], it["feats"])
        assert (batch.feats[j, n:] == 0).all()
    assert batch.targets.tolist() == [1, 2, 3, 4, 5, 6]
    assert batch.target_lengths.tolist() == [2, 1, 3]
    assert batch.skipped == [("bad", "bad.wav: cannot read audio")]
    assert batch.lengths.dtype == batch.target_lengths.dtype == batch.targets.dtype == torch.long


def test_collate_all_items_bad():
    batch = collate([{"id": "x", "error": "x: no such file"}, {"id": "y", "error": "y: no such file"}])
    assert batch.ids == [] and batch.feats.shape[0] == 0 and batch.targets.numel() == 0
    assert batch.skipped == [("x", "x: no such file"), ("y", "y: no such file")]


# BucketBatchSampler -----------------------------------------------------------------------------


def _durations(n: int = 300, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    durations = [round(rng.uniform(0.3, 16.0), 2) for _ in range(n)]
    durations[5] = 75.0  # longer than a whole batch may be
    durations[17] = 61.0
    return durations


def _check_batches(batches: list[list[int]], durations: list[float], max_seconds: float) -> None:
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(durations)))  # every index exactly once
    for b in batches:
        assert b
        if len(b) > 1:
            assert len(b) * max(durations[i] for i in b) <= max_seconds + 1e-9
        else:
            assert durations[b[0]] > 0


@pytest.mark.parametrize("shuffle", [True, False])
def test_bucket_sampler_covers_everything_within_budget(shuffle):
    durations = _durations()
    sampler = BucketBatchSampler(durations, max_seconds=60.0, shuffle=shuffle, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        _check_batches(batches, durations, 60.0)
        assert len(sampler) == len(batches)
        assert [5] in batches and [17] in batches  # over-long utterances travel alone
    assert max(len(b) for b in batches) > 10  # short utterances do share batches


def test_bucket_sampler_changes_between_epochs_and_repeats_for_the_same_seed():
    durations = _durations()
    a = BucketBatchSampler(durations, max_seconds=60.0, seed=1)
    epoch0 = list(a)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch0 != epoch1

    b = BucketBatchSampler(durations, max_seconds=60.0, seed=1)
    b.set_epoch(1)
    assert list(b) == epoch1
    b.set_epoch(0)
    assert list(b) == epoch0

    c = BucketBatchSampler(durations, max_seconds=60.0, seed=2)
    assert list(c) != epoch0


def test_bucket_sampler_without_shuffle_is_sorted_by_duration():
    durations = _durations()
    sampler = BucketBatchSampler(durations, max_seconds=60.0, shuffle=False)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert [durations[i] for i in flat] == sorted(durations)
    sampler.set_epoch(4)
    assert list(sampler) == batches


def test_bucket_sampler_sorted_first_epoch_runs_shortest_first_then_shuffles():
    durations = _durations()
    sampler = BucketBatchSampler(durations, max_seconds=60.0, seed=1, sorted_first_epoch=True)
    batches = list(sampler)
    longest = [max(durations[i] for i in b) for b in batches]
    # The +-10 % jitter may swap near neighbours, but the first epoch goes from short to long.
    assert durations.index(min(durations)) in batches[0] and longest[-1] == 75.0
    assert all(a <= b * 1.25 for a, b in zip(longest, longest[1:], strict=False))
    sampler.set_epoch(1)
    later = [max(durations[i] for i in b) for b in sampler]
    assert later != sorted(later)
    _check_batches(list(sampler), durations, 60.0)


def test_bucket_sampler_in_a_dataloader():
    durations = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    dataset = list(range(len(durations)))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=BucketBatchSampler(durations, 7.0, shuffle=False))
    assert [b.tolist() for b in loader] == [[0, 1], [2], [3], [4], [5]]


# SpeechDataset ----------------------------------------------------------------------------------


class _StubFeatures:
    """Stands in for FeatureExtractor: (N,) -> (1 + N // 160, 4), cheap and deterministic."""

    def __call__(self, wave):
        wave = torch.as_tensor(wave)
        frames = 1 + len(wave) // 160
        return torch.arange(frames * 4, dtype=torch.float32).reshape(frames, 4) + 1


@pytest.fixture()
def two_utterances(tmp_path):
    good = tmp_path / "good.wav"
    soundfile.write(str(good), np.zeros(8000, dtype=np.float32), 16_000)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    return [Utterance("good", str(good), 0.5, "Hello there"), Utterance("junk", str(junk), 1.0, "lost")]


def test_speech_dataset_items(two_utterances):
    tok = CharTokenizer()
    ds = SpeechDataset(two_utterances, _StubFeatures(), tok)
    assert len(ds) == 2
    item = ds[0]
    assert item["id"] == "good" and item["text"] == "Hello there"
    assert item["feats"].shape == (1 + 8000 // 160, 4)
    assert item["targets"].tolist() == tok.encode("Hello there")
    assert item["targets"].dtype == torch.long


def test_speech_dataset_unreadable_file_is_an_error_item(two_utterances):
    ds = SpeechDataset(two_utterances, _StubFeatures(), CharTokenizer())
    item = ds[1]
    assert item["id"] == "junk"
    assert "junk.wav" in item["error"]
    batch = collate([ds[0], ds[1]])
    assert batch.ids == ["good"]
    assert batch.skipped == [("junk", item["error"])]


def test_speech_dataset_augmentation_is_reproducible(two_utterances):
    aug = SpecAugment(freq_masks=1, freq_width=3, time_masks=1, time_width_ratio=0.2)
    ds = SpeechDataset(two_utterances, _StubFeatures(), CharTokenizer(), spec_augment=aug, seed=7)
    first = ds[0]["feats"]
    assert torch.equal(ds[0]["feats"], first)  # same seed, epoch and index
    again = SpeechDataset(two_utterances, _StubFeatures(), CharTokenizer(), spec_augment=aug, seed=7)
    assert torch.equal(again[0]["feats"], first)
    epochs = []
    for epoch in range(6):
        ds.epoch = epoch
        epochs.append(ds[0]["feats"])
    assert any(not torch.equal(e, epochs[0]) for e in epochs[1:])


def _cut_by_a_random_draw(wave, gen):
    """A wave augment whose output length tells which random draw it made (1-20 frames cut)."""
    return wave[: len(wave) - 160 * int(torch.randint(1, 21, (1,), generator=gen))]


def test_speech_dataset_augment_ramp_eases_in_then_draws_as_without_it(tmp_path):
    path = tmp_path / "a.wav"
    soundfile.write(str(path), np.zeros(8000, dtype=np.float32), 16_000)
    utts = [Utterance(f"u{i}", str(path), 0.5, "a") for i in range(400)]
    full = 1 + 8000 // 160

    def lengths(ds, epoch):
        ds.epoch = epoch
        return [ds[i]["feats"].shape[0] for i in range(len(ds))]

    ramped = SpeechDataset(utts, _StubFeatures(), CharTokenizer(), seed=3, wave_augment=[_cut_by_a_random_draw],
                           augment_ramp=3)
    plain = SpeechDataset(utts, _StubFeatures(), CharTokenizer(), seed=3, wave_augment=[_cut_by_a_random_draw])
    for epoch, share in enumerate([0.25, 0.5, 0.75]):
        got = lengths(ramped, epoch)
        assert ramped.augment_share() == pytest.approx(share)
        touched = sum(n < full for n in got) / len(got)
        assert abs(touched - share) < 0.08, (epoch, touched)
    assert lengths(plain, 0).count(full) == 0  # without a ramp, every utterance from the first epoch
    for epoch in (3, 5):  # after the ramp: all of them, with the very draws of a run without one
        assert lengths(ramped, epoch) == lengths(plain, epoch)
        assert ramped.augment_share() == 1.0
    with pytest.raises(ValueError, match="0 or more epochs, got -1"):
        SpeechDataset(utts, _StubFeatures(), CharTokenizer(), augment_ramp=-1)


# atomic writes ----------------------------------------------------------------------------------


def test_atomic_write_text(tmp_path):
    path = tmp_path / "new" / "folder" / "file.txt"
    atomic_write_text(path, "first \u00e9\n")
    assert path.read_text(encoding="utf-8") == "first \u00e9\n"
    atomic_write_text(path, "second\n")
    assert path.read_text(encoding="utf-8") == "second\n"
    assert os.listdir(path.parent) == ["file.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_open_failure_keeps_the_old_file(tmp_path, exc):
    path = tmp_path / "file.txt"
    atomic_write_text(path, "old content\n")
    with pytest.raises(exc):
        with atomic_open(path, "w") as f:
            f.write("half of the new")
            raise exc("boom")
    assert path.read_text(encoding="utf-8") == "old content\n"
    assert os.listdir(tmp_path) == ["file.txt"]  # no temporary file left behind


def test_atomic_open_write_error_is_one_line_and_keeps_the_old_file(tmp_path):
    import errno

    from asr.errors import InputError

    path = tmp_path / "file.txt"
    atomic_write_text(path, "old content\n")
    with pytest.raises(InputError, match=r"file.txt: could not write it \(No space left on device\)"):
        with atomic_open(path, "w") as f:
            f.write("half of the new")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text(encoding="utf-8") == "old content\n"
    assert os.listdir(tmp_path) == ["file.txt"]


def test_atomic_open_failure_without_an_old_file(tmp_path):
    path = tmp_path / "file.bin"
    with pytest.raises(ValueError):
        with atomic_open(path) as f:
            f.write(b"\x00\x01")
            raise ValueError("boom")
    assert os.listdir(tmp_path) == []


def test_atomic_open_binary(tmp_path):
    path = tmp_path / "file.bin"
    with atomic_open(path) as f:
        f.write(b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"


@pytest.mark.parametrize("replicas", [2, 3])
def test_bucket_sampler_gives_ranks_disjoint_batches_and_equal_steps(replicas):
    durations = _durations()
    full = BucketBatchSampler(durations, max_seconds=60.0, seed=5)
    full.set_epoch(2)
    everything = list(full)
    per_rank = []
    for rank in range(replicas):
        s = BucketBatchSampler(durations, max_seconds=60.0, seed=5, num_replicas=replicas, rank=rank)
        s.set_epoch(2)
        per_rank.append(list(s))
    assert len({len(b) for b in per_rank}) == 1  # the same number of steps on every rank
    flat = [tuple(b) for rank_batches in per_rank for b in rank_batches]
    pad = -len(everything) % replicas
    assert len(flat) == len(everything) + pad
    assert set(flat) == {tuple(b) for b in everything}  # nothing lost
    assert len(set(flat)) == len(everything)  # only the padding repeats
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler(durations, 60.0, num_replicas=2, rank=2)


def test_atomic_open_in_an_unwritable_place_is_an_input_error(tmp_path):
    from asr.errors import InputError

    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="cannot create this folder"):
        atomic_write_text(tmp_path / "file" / "x.txt", "text")
