"""`asr doctor` on real AN4 speech plus one planted fault of each kind."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.doctor import BLOCKING, ctc_feasible, ctc_frames_needed, diagnose, run_doctor

REPO = Path(__file__).resolve().parents[1]
AN4 = REPO.parent / "shared" / "data" / "an4"
CLEAN = {"an251-fash-b": "YES", "an253-fash-b": "GO", "cen1-fash-b": "H I N I C H", "cen2-fash-b": "A M Y",
         "cen4-fash-b": "M O R E W O O D", "cen5-fash-b": "P I T T S B U R G H"}
# planted id -> the categories it must land in
PLANTED = {
    "missing": {"unreadable_audio"},
    "zero-bytes": {"unreadable_audio"},
    "not-audio": {"unreadable_audio"},
    "no-text": {"empty_transcript"},
    "digits": {"unknown_characters"},
    "ctc": {"ctc_impossible"},
    "clipped": {"clipping"},
    "silent": {"near_silence"},
    "hifi-stereo": {"sample_rate", "channels"},
    "wrong-duration": {"duration_mismatch"},
}
BLOCKED = {"missing", "zero-bytes", "not-audio", "no-text", "ctc"}


def an4_wave(uid: str) -> np.ndarray:
    speaker = uid.split("-")[1]
    wave, rate = soundfile.read(AN4 / "wav" / "an4_clstk" / speaker / f"{uid}.sph", dtype="float32")
    assert rate == 16000
    return wave


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A manifest of 6 clean AN4 utterances, the planted faults and one line that is not JSON."""
    if not AN4.is_dir():
        pytest.skip(f"real AN4 audio not found at {AN4}")
    import soxr

    d = tmp_path_factory.mktemp("doctor")
    rows = []

    def add(uid, audio, text, duration=None):
        if duration is None:
            duration = soundfile.info(str(audio)).duration
        rows.append(json.dumps({"id": uid, "audio": str(audio), "duration": duration, "text": text}))

    def wav(name, wave, rate=16000) -> Path:
        soundfile.write(d / name, wave, rate, subtype="PCM_16")
        return d / name

    for uid, text in CLEAN.items():
        add(uid, AN4 / "wav" / "an4_clstk" / "fash" / f"{uid}.sph", text)
    add("missing", d / "missing.wav", "YES", 1.0)
    (d / "zero.wav").write_bytes(b"")
    add("zero-bytes", d / "zero.wav", "YES", 1.0)
    (d / "text.wav").write_text("this is not audio\n")
    add("not-audio", d / "text.wav", "YES", 1.0)
    add("no-text", wav("no-text.wav", an4_wave("an87-fbbh-b")), "")
    add("digits", wav("digits.wav", an4_wave("an86-fbbh-b")), "C Z D Z W 8 &")
    add("ctc", wav("ctc.wav", an4_wave("cen3-fbbh-b")[:4800]), "fifty one fifty six said far too quickly")
    add("clipped", wav("clipped.wav", np.clip(30 * an4_wave("cen1-fbbh-b"), -1, 1)), "H O W E L L")
    quiet = 1e-4 * np.random.default_rng(0).standard_normal(32000)
    add("silent", wav("silent.wav", quiet.astype(np.float32)), "NO")
    hifi = soxr.resample(an4_wave("cen2-fbbh-b"), 16000, 44100)
    add("hifi-stereo", wav("hifi.wav", np.stack([hifi, hifi], axis=1), 44100), "B E V E R L Y")
    wrong = wav("wrong.wav", an4_wave("an90-fbbh-b"))
    add("wrong-duration", wrong, "NO", soundfile.info(str(wrong)).duration + 1.0)
    rows.insert(3, "{this line is not JSON")
    (d / "m.jsonl").write_text("\n".join(rows) + "\n")
    return d


@pytest.fixture(scope="module")
def report(data):
    return diagnose([data / "m.jsonl"], workers=2, progress=False)


def found(report) -> dict[str, set[str]]:
    """utterance id -> categories it was reported under."""
    by_id: dict[str, set[str]] = {}
    for key, cat in report.data["categories"].items():
        for item in cat["items"]:
            if "id" in item:
                by_id.setdefault(item["id"], set()).add(key)
    return by_id


def test_ctc_rule_counts_a_blank_between_repeats():
    assert ctc_frames_needed([]) == 0 and ctc_frames_needed([1, 2, 3]) == 3
    assert ctc_frames_needed([1, 2, 2, 3]) == 5 and ctc_frames_needed([5, 5, 5, 5]) == 7
    frames = 1 + 4800 // 160  # 0.3 s -> 31 input frames -> 8 output frames after x4 subsampling
    assert ctc_feasible([1, 2] * 4, frames) and not ctc_feasible([1, 2] * 4 + [3], frames)
    assert ctc_feasible([1, 1, 2, 2], frames) and not ctc_feasible([1, 1, 1, 1, 1], frames)


def test_every_planted_fault_is_found_and_categorised(report):
    by_id = found(report)
    for uid, expected in PLANTED.items():
        assert expected <= by_id.get(uid, set()), (uid, by_id.get(uid))
        assert bool(by_id[uid] & set(BLOCKING)) == (uid in BLOCKED), (uid, by_id[uid])
    for uid in CLEAN:  # real speech raises no alarm at all
        assert uid not in by_id, (uid, by_id[uid])

    cats = report.data["categories"]
    details = {item["id"]: item["detail"] for item in cats["unreadable_audio"]["items"]}
    assert "no such file" in details["missing"] and "empty file" in details["zero-bytes"]
    assert "cannot read audio" in details["not-audio"]
    assert [item["manifest"] for item in cats["manifest_line"]["items"]] == [str(report.data["manifests"][0])]
    assert ":4: invalid JSON" in cats["manifest_line"]["items"][0]["detail"]
    unknown = report.data["unknown_characters"]
    assert unknown["8"] == {"count": 1, "utterances": 1, "examples": ["digits"]} and "&" in unknown
    assert report.data["distributions"]["sample_rate"] == {"16000": 12, "44100": 1}
    assert report.data["blocked_utterances"] == len(BLOCKED) and not report.ok
    assert [u.id for u in report.kept] == [*CLEAN, *(uid for uid in PLANTED if uid not in BLOCKED)]


def test_report_clean_manifest_and_exit_codes(data, tmp_path):
    out = io.StringIO()
    code = run_doctor([str(data / "m.jsonl")], workers=1, clean=str(tmp_path / "clean.jsonl"),
                      json_path=str(tmp_path / "r.json"), out=out)
    text = out.getvalue()
    assert code == 1 and text.rstrip().splitlines()[-1].startswith("verdict: FAIL - 5 of 16 utterances")
    assert text.index("BLOCKING") < text.index("WARNINGS")
    assert "'8' x1 in 1 utterance, e.g. digits" in text and "ctc: " in text
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["categories"]["ctc_impossible"]["count"] == 1 and saved["ok"] is False

    from asr.data import read_manifest

    kept, problems = read_manifest(tmp_path / "clean.jsonl")
    assert not problems and {u.id for u in kept} == set(CLEAN) | (set(PLANTED) - BLOCKED)
    # What --clean wrote passes (warnings remain warnings), so `asr doctor ... && asr train ...` can gate.
    out = io.StringIO()
    assert run_doctor([str(tmp_path / "clean.jsonl")], workers=2, out=out) == 0
    assert out.getvalue().rstrip().splitlines()[-1].startswith("verdict: OK - 11 utterances, none with blocking")
    assert "WARNINGS" in out.getvalue() and "BLOCKING" not in out.getvalue()


def test_vocabulary_of_a_checkpoint(data, tmp_path):
    from asr.audio import FeatureExtractor
    from asr.model import Model, preset_config, save_checkpoint
    from asr.text import CharTokenizer

    tok = CharTokenizer(" 'abcdefghijklmnopqrstuvwx")  # no y, no z
    feats = FeatureExtractor()
    feats.set_stats([np.zeros(1600, dtype=np.float32) + 0.01])
    save_checkpoint(tmp_path / "m.pt", Model(preset_config("tiny", tok.vocab_size)), tok, feats, {})
    r = diagnose([data / "m.jsonl"], model=str(tmp_path / "m.pt"), workers=1)
    y, z = r.data["unknown_characters"]["y"], r.data["unknown_characters"]["z"]
    assert y == {"count": 9, "utterances": 7, "examples": ["an251-fash-b", "cen2-fash-b", "missing"]}
    assert z == {"count": 2, "utterances": 1, "examples": ["digits"]}
    assert r.data["tokenizer"] == {"kind": "char", "vocab_size": 27, "source": f"tokenizer of {tmp_path / 'm.pt'}"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "asr", "doctor", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_command_line(data, tmp_path):
    proc = run_cli(data / "m.jsonl", "--workers", "2", "--json", tmp_path / "r.json", "--clean", tmp_path / "c.jsonl")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1].startswith("verdict: FAIL")
    assert (tmp_path / "r.json").is_file() and len((tmp_path / "c.jsonl").read_text().splitlines()) == 11

    proc = run_cli(tmp_path / "nowhere.jsonl")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nowhere.jsonl'}: "
                                                                          "no such manifest"]
    proc = run_cli(data / "m.jsonl", "--tokenizer", "char", "--model", "x.pt")
    assert proc.returncode == 2 and "not allowed with" in proc.stderr


def test_warnings_that_need_no_real_speech(tmp_path):
    """Length, speech rate, duration outliers and shared files are warnings: reported, nothing blocks."""
    rng = np.random.default_rng(0)
    rows = []

    def add(uid, seconds, text, name=None):
        path = tmp_path / f"{name or uid}.wav"
        if not path.exists():
            soundfile.write(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        rows.append(json.dumps({"id": uid, "audio": path.name, "duration": seconds, "text": text}))

    for n in range(6):
        add(f"n{n}", 2.0 + 0.2 * n, "hello there")
    add("fast", 2.0, "abcdefghij klmnopqrstuv " * 2)  # 22 letters/s: CTC can (47 labels, 51 frames), people not
    add("slow", 2.5, "a")
    add("short", 0.2, "a")
    add("long", 31.0, "a long recording with a short transcript")
    add("odd", 9.0, "hello there and here and everywhere")
    add("dup", 2.0, "hello there", name="n0")
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    report = diagnose([tmp_path / "m.jsonl"], workers=1)
    by_id = found(report)
    assert report.ok and report.data["blocked_utterances"] == 0 and len(report.kept) == 12
    assert by_id["fast"] == {"speech_rate"} and by_id["slow"] == {"speech_rate"}
    assert by_id["short"] == {"too_short"} and "too_long" in by_id["long"] and "duration_outlier" in by_id["odd"]
    assert by_id["n0"] == by_id["dup"] == {"duplicate_audio"}
    assert all(f"n{n}" not in by_id for n in range(1, 6))


def test_threads_option_and_one_utterance_in_the_singular(tmp_path):
    """`asr doctor` had no --threads (issue 30), and said '1 utterances'."""
    from asr.data import Utterance, write_manifest

    wave = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", wave, 16000)
    write_manifest(tmp_path / "one.jsonl", [Utterance("a", str(tmp_path / "a.wav"), 1.0, "go")])
    proc = run_cli(tmp_path / "one.jsonl", "--threads", "1", "--clean", tmp_path / "clean.jsonl")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("1 utterance, ") and "of 1 utterance (0 with blocking" in proc.stdout
