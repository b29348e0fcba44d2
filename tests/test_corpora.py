import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.corpora import scan_an4, scan_librispeech, split_by_speaker
from asr.data import Utterance
from asr.errors import InputError

# Synthetic AN4 ----------------------------------------------------------------------------------


def _sphere(path: Path, seconds: float, rate: int = 16_000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.zeros(round(seconds * rate), dtype=np.int16), rate, format="NIST",
                    subtype="PCM_16")


@pytest.fixture()
def an4(tmp_path) -> Path:
    root = tmp_path / "an4"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "an4_train.transcription").write_text(
        "<s> YES </s> (an1-fash-b)\n"
        "<s> ENTER FOUR FIVE </s> (an2-fash-b)\n"
        "\n"
        "<s> RUBOUT G M E F </s> (cen1-mblw-b)\n"
        "<s> NO AUDIO HERE </s> (an9-mblw-b)\n"
    )
    (root / "etc" / "an4_test.transcription").write_text(
        "GO (an409-fcaw-b)\n"
        "ERASE C Q Q F SEVEN (an410-fcaw-b)\n"
    )
    train, test = root / "wav" / "an4_clstk", root / "wav" / "an4test_clstk"
    _sphere(train / "fash" / "an1-fash-b.sph", 0.5)
    _sphere(train / "fash" / "an2-fash-b.sph", 1.25)
    _sphere(train / "mblw" / "cen1-mblw-b.sph", 2.0)
    _sphere(train / "mblw" / "an7-mblw-b.sph", 1.0)  # no transcript line
    _sphere(test / "fcaw" / "an409-fcaw-b.sph", 0.75)
    _sphere(test / "fcaw" / "an410-fcaw-b.sph", 3.0)
    return root


def test_scan_an4_synthetic(an4, caplog):
    with caplog.at_level(logging.WARNING, logger="asr"):
        found = scan_an4(an4)

    assert set(found) == {"train", "test"}
    train = {u.id: u for u in found["train"]}
    assert list(train) == ["an1-fash-b", "an2-fash-b", "cen1-mblw-b"]  # transcript order
    assert [u.text for u in train.values()] == ["YES", "ENTER FOUR FIVE", "RUBOUT G M E F"]
    assert [u.speaker for u in train.values()] == ["fash", "fash", "mblw"]
    assert [u.duration for u in train.values()] == pytest.approx([0.5, 1.25, 2.0])
    for u in found["train"] + found["test"]:
        assert os.path.isabs(u.audio) and Path(u.audio).is_file()
        assert Path(u.audio).stem == u.id
    test = found["test"]
    assert [(u.id, u.text, u.speaker) for u in test] == [("an409-fcaw-b", "GO", "fcaw"),
                                                         ("an410-fcaw-b", "ERASE C Q Q F SEVEN", "fcaw")]
    assert [u.duration for u in test] == pytest.approx([0.75, 3.0])

    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "an9-mblw-b" in warnings  # transcript line without audio
    assert "an7-mblw-b" in warnings  # audio without transcript line


def test_scan_an4_train_half_only(an4):
    (an4 / "etc" / "an4_test.transcription").unlink()
    found = scan_an4(an4)
    assert list(found) == ["train"]
    assert len(found["train"]) == 3


def test_scan_an4_unreadable_audio_is_skipped(an4, caplog):
    (an4 / "wav" / "an4_clstk" / "fash" / "an2-fash-b.sph").write_text("not a sphere file")
    with caplog.at_level(logging.WARNING, logger="asr"):
        found = scan_an4(an4)
    assert [u.id for u in found["train"]] == ["an1-fash-b", "cen1-mblw-b"]
    assert any("an2-fash-b.sph" in r.getMessage() for r in caplog.records)


def test_scan_an4_unparsable_line_is_skipped(an4, caplog):
    trans = an4 / "etc" / "an4_train.transcription"
    trans.write_text(trans.read_text() + "this line has no id\n")
    with caplog.at_level(logging.WARNING, logger="asr"):
        found = scan_an4(an4)
    assert len(found["train"]) == 3
    assert any("this line has no id" in r.getMessage() for r in caplog.records)


def test_scan_an4_without_transcriptions(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path)):
        scan_an4(tmp_path)


def test_scan_an4_real(shared_data):
    root = shared_data / "an4"
    if not (root / "etc" / "an4_train.transcription").is_file():
        pytest.skip(f"AN4 not found under {root}")
    found = scan_an4(root)
    train = found["train"]
    assert len(train) == 948
    assert len({u.speaker for u in train}) == 74
    assert len({u.id for u in train}) == 948
    assert all(u.duration > 0 and u.text and u.text == u.text.strip() for u in train)
    assert not any("<s>" in u.text or "</s>" in u.text or "(" in u.text for u in train)
    assert sum(u.duration for u in train) / 60 == pytest.approx(42.4, abs=0.1)
    first = next(u for u in train if u.id == "an251-fash-b")
    assert (first.text, first.speaker) == ("YES", "fash")


# LibriSpeech ------------------------------------------------------------------------------------

LIBRISPEECH_SAMPLE = {
    "1089-134686-0000": "HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES AND FAT "
                        "MUTTON PIECES TO BE LADLED OUT IN THICK PEPPERED FLOUR FATTENED SAUCE",
    "1089-134686-0001": "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM",
    "1089-134691-0000": "HE COULD WAIT NO LONGER",
    "1089-134691-0001": "FOR A FULL HOUR HE HAD PACED UP AND DOWN WAITING BUT HE COULD WAIT NO LONGER",
}


def test_scan_librispeech_sample(shared_data):
    root = shared_data / "librispeech-sample"
    if not root.is_dir():
        pytest.skip(f"LibriSpeech sample not found at {root}")
    found = scan_librispeech(root)
    assert list(found) == ["test-clean"]
    utts = found["test-clean"]
    assert {u.id: u.text for u in utts} == LIBRISPEECH_SAMPLE  # the last line of each file has no newline
    assert {u.speaker for u in utts} == {"1089"}
    for u in utts:
        assert Path(u.audio).is_file() and Path(u.audio).name == f"{u.id}.flac"
        assert u.duration == pytest.approx(soundfile.info(u.audio).duration)
        assert 1.0 < u.duration < 20.0


def test_scan_librispeech_synthetic(tmp_path, caplog):
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    for uid, seconds in [("84-121123-0000", 1.0), ("84-121123-0001", 0.5)]:
        soundfile.write(str(chapter / f"{uid}.flac"), np.zeros(round(16_000 * seconds), dtype=np.int16), 16_000)
    (chapter / "84-121123.trans.txt").write_text(
        "84-121123-0000 GO DO YOU HEAR\n"
        "84-121123-0002 THIS ONE HAS NO AUDIO\n"
        "\n"
        "84-121123-0001 BUT IN LESS THAN FIVE MINUTES"  # no final newline
    )
    with caplog.at_level(logging.WARNING, logger="asr"):
        found = scan_librispeech(tmp_path)
    utts = found["dev-clean"]
    assert [(u.id, u.text, u.speaker) for u in utts] == [("84-121123-0000", "GO DO YOU HEAR", "84"),
                                                         ("84-121123-0001", "BUT IN LESS THAN FIVE MINUTES", "84")]
    assert [u.duration for u in utts] == pytest.approx([1.0, 0.5])
    assert any("84-121123-0002" in r.getMessage() for r in caplog.records)


def test_scan_librispeech_errors(tmp_path):
    with pytest.raises(InputError, match="absent"):
        scan_librispeech(tmp_path / "absent")
    with pytest.raises(InputError, match=str(tmp_path)):
        scan_librispeech(tmp_path)  # exists, but holds no transcripts


# split_by_speaker -------------------------------------------------------------------------------


def _utts(seed: int = 0) -> list[Utterance]:
    rng = np.random.default_rng(seed)
    utts = []
    for s in range(30):
        for k in range(int(rng.integers(3, 15))):
            utts.append(Utterance(f"s{s}-{k}", f"/x/s{s}-{k}.wav", 1.0, "text", f"spk{s}"))
    return utts


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_split_by_speaker(fraction):
    utts = _utts()
    rest, held = split_by_speaker(utts, fraction, seed=0)
    assert {u.speaker for u in rest}.isdisjoint({u.speaker for u in held})
    assert sorted(u.id for u in rest + held) == sorted(u.id for u in utts)
    assert fraction <= len(held) / len(utts) <= fraction + 15 / len(utts)  # at most one speaker over
    rest_ids = {u.id for u in rest}
    assert [u.id for u in rest] == [u.id for u in utts if u.id in rest_ids]  # input order kept


def test_split_by_speaker_is_deterministic():
    utts = _utts()
    a = split_by_speaker(utts, 0.2, seed=5)
    b = split_by_speaker(list(reversed(utts)), 0.2, seed=5)
    assert {u.id for u in a[1]} == {u.id for u in b[1]}  # input order does not matter
    held_sets = {frozenset(u.speaker for u in split_by_speaker(utts, 0.2, seed=s)[1]) for s in range(5)}
    assert len(held_sets) > 1  # the seed does


def test_split_by_speaker_edges():
    utts = _utts()
    rest, held = split_by_speaker(utts, 0.0)
    assert held == [] and len(rest) == len(utts)
    rest, held = split_by_speaker(utts, 1.0)
    assert rest == [] and len(held) == len(utts)
    # Utterances without a speaker are their own speaker.
    anonymous = [Utterance(f"u{i}", f"/x/u{i}.wav", 1.0) for i in range(10)]
    rest, held = split_by_speaker(anonymous, 0.3, seed=1)
    assert len(held) == 3 and len(rest) == 7


def test_split_by_speaker_per_group():
    utts = [Utterance(f"{s}-{k}", f"/x/{s}-{k}.wav", 1.0, "text", s)
            for s in [f"f{i:02d}" for i in range(24)] + [f"m{i:02d}" for i in range(6)] for k in range(4)]
    for seed in range(5):
        rest, held = split_by_speaker(utts, 0.2, seed=seed, group=lambda s: s[0])
        assert {u.speaker for u in rest}.isdisjoint({u.speaker for u in held})
        for sex, speakers in [("f", 24), ("m", 6)]:
            held_here = sum(u.speaker.startswith(sex) for u in held)
            assert 0.2 * speakers * 4 <= held_here <= 0.2 * speakers * 4 + 4  # at most one speaker over


def test_split_real_an4_by_speaker(shared_data):
    root = shared_data / "an4"
    if not (root / "etc" / "an4_train.transcription").is_file():
        pytest.skip(f"AN4 not found under {root}")
    train = scan_an4(root)["train"]
    rest, held = split_by_speaker(train, 0.1, seed=0)
    assert {u.speaker for u in rest}.isdisjoint({u.speaker for u in held})
    assert 0.1 <= len(held) / len(train) <= 0.15
    assert len(rest) + len(held) == len(train)


def test_librispeech_rescan_takes_durations_from_the_existing_manifest(tmp_path, monkeypatch):
    import shutil

    import asr.corpora
    from asr.data import write_manifest

    src = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "librispeech-sample"
    if not src.is_dir():
        pytest.skip(f"LibriSpeech sample not found at {src}")
    root = tmp_path / "ls"
    shutil.copytree(src, root)
    first = scan_librispeech(root, cache_dir=tmp_path)
    write_manifest(tmp_path / "test-clean.jsonl", first["test-clean"])

    reads = []
    real = asr.corpora.audio_duration
    monkeypatch.setattr(asr.corpora, "audio_duration", lambda p: reads.append(p) or real(p))
    again = scan_librispeech(root, cache_dir=tmp_path)
    assert reads == []  # every duration came from the manifest
    expected = [(u.id, round(u.duration, 3)) for u in first["test-clean"]]
    assert [(u.id, u.duration) for u in again["test-clean"]] == expected

    changed = next(root.rglob("*.flac"))
    # modified after the manifest was written: its header is read again
    os.utime(changed, ns=(os.stat(tmp_path / "test-clean.jsonl").st_mtime_ns + 10**9,) * 2)
    scan_librispeech(root, cache_dir=tmp_path)
    assert [Path(p).name for p in reads] == [changed.name]
