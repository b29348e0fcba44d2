import json

import pytest

from asr.alignment import Hypothesis
from asr.cli import main
from asr.data import Utterance
from asr.errors import InputError
from asr.evaluate import Decoded, compare_results, comparison_lines, report_lines, summarize


def _decoded(uid, ref, hyp, duration=2.0):
    u = Utterance(uid, f"/audio/{uid}.wav", duration, ref, "spk")
    return Decoded(u, None if hyp is None else Hypothesis(hyp, [], []),
                   None if hyp is not None else f"/audio/{uid}.wav: cannot read audio")


def test_summary_counts_and_rows():
    decoded = [
        _decoded("a", "Enter Eight One", "enter eight one"),  # case does not count
        _decoded("b", "G O", "g o o"),  # one insertion
        _decoded("c", "YES", "no", duration=1.0),  # one substitution
        _decoded("d", "STOP", None),  # unreadable: skipped, not scored
    ]
    summary, rows = summarize(decoded, decode_seconds=0.5)
    assert summary["utterances"] == 3 and summary["ref_words"] == 6
    assert (summary["substitutions"], summary["deletions"], summary["insertions"]) == (1, 0, 1)
    assert summary["wer"] == 2 / 6
    assert summary["audio_seconds"] == 5.0 and summary["real_time_factor"] == 0.1
    assert summary["skipped"] == ["/audio/d.wav: cannot read audio"]
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert rows[1]["insertions"] == 1 and rows[1]["wer"] == 0.5 and rows[2]["cer"] == 1.0
    json.dumps(summary)
    json.dumps(rows)  # both go to disk as JSON


def _results(n_errors: list[int], speakers=("s1", "s2", "s3"), words: int = 5) -> list[Decoded]:
    """Utterances of `words` words with the given number of substituted words each."""
    ref = [f"w{i}" for i in range(words)]
    out = []
    for i, e in enumerate(n_errors):
        u = Utterance(f"u{i}", f"/audio/u{i}.wav", 0.5 + 1.3 * i % 25, " ".join(ref), speakers[i % len(speakers)])
        out.append(Decoded(u, Hypothesis(" ".join(["x"] * e + ref[e:]), [], [])))
    return out


def test_ser_ci_and_worst():
    summary, rows = summarize(_results([0, 1, 0, 3, 2, 0, 0, 1, 5, 0]), decode_seconds=1.0, worst=3)
    assert summary["ser"] == 0.5
    assert [r["errors"] for r in rows] == [0, 1, 0, 3, 2, 0, 0, 1, 5, 0]
    low, high = summary["wer_ci95"]
    assert low < summary["wer"] < high
    assert [w["id"] for w in summary["worst"]] == ["u8", "u3", "u4"]
    assert set(summary["worst"][0]) == {"id", "wer", "errors", "reference", "hypothesis"}
    assert summarize(_results([0, 1, 0, 3]), 1.0, worst=10)[0]["worst"] == summary["worst"][1:2] + [
        {"id": "u1", "wer": 0.2, "errors": 1, "reference": "w0 w1 w2 w3 w4", "hypothesis": "x w1 w2 w3 w4"}]
    assert summarize(_results([0, 1, 0, 3]), 1.0)[0]["wer_ci95"] == summarize(_results([0, 1, 0, 3]), 1.0)[0][
        "wer_ci95"]  # a fixed seed


def test_worst_ties_are_broken_by_wer():
    decoded = [_decoded("long", "a b c d e f", "x y c d e f"), _decoded("short", "a b", "x y")]
    assert [w["id"] for w in summarize(decoded, 1.0)[0]["worst"]] == ["short", "long"]


def test_speaker_and_duration_groups_add_up_to_the_totals():
    summary, rows = summarize(_results([i % 4 for i in range(40)]), decode_seconds=1.0)
    errors = summary["substitutions"] + summary["deletions"] + summary["insertions"]
    for groups in (summary["by_speaker"], summary["by_duration"]):
        assert sum(g["errors"] for g in groups.values()) == errors
        assert sum(g["ref_words"] for g in groups.values()) == summary["ref_words"]
        assert sum(g["utterances"] for g in groups.values()) == summary["utterances"]
        assert all(g["wer"] == round(g["errors"] / g["ref_words"], 5) for g in groups.values())
    assert list(summary["by_speaker"]) == ["s1", "s2", "s3"]
    assert list(summary["by_duration"]) == ["<2 s", "2-5 s", "5-10 s", "10-20 s", ">=20 s"]
    edges = [0, 2, 5, 10, 20, float("inf")]
    assert [g["utterances"] for g in summary["by_duration"].values()] == [
        sum(lo <= r["duration"] < hi for r in rows) for lo, hi in zip(edges, edges[1:], strict=False)]


def test_duration_bucket_edges_and_empty_buckets():
    decoded = [_decoded("a", "a", "a", duration=1.99), _decoded("b", "b", "b", duration=2.0),
               _decoded("c", "c", "c", duration=20.0)]
    summary, _ = summarize(decoded, 1.0)
    assert {k: g["utterances"] for k, g in summary["by_duration"].items()} == {"<2 s": 1, "2-5 s": 1, ">=20 s": 1}


def test_speakers_unknown():
    u = Utterance("a", "/audio/a.wav", 1.0, "a b", None)
    summary, _ = summarize([Decoded(u, Hypothesis("a", [], []))], 1.0)
    assert summary["by_speaker"] == {} and summary["by_duration"]["<2 s"]["errors"] == 1


def test_nothing_scored():
    summary, rows = summarize([_decoded("d", "STOP", None)], 1.0)
    assert rows == [] and summary["ser"] == 0.0 and summary["wer_ci95"] == [0.0, 0.0]
    assert summary["by_speaker"] == summary["by_duration"] == {} and summary["worst"] == []
    assert report_lines(summary)[0].startswith("SER 0.00 %")


def test_rows_carry_errors_and_alignment():
    _, rows = summarize([_decoded("b", "G O", "g o o")], 1.0)
    assert rows[0]["errors"] == 1
    assert rows[0]["alignment"] == [{"op": "equal", "ref": ["g", "o"], "hyp": ["g", "o"]},
                                    {"op": "insert", "ref": [], "hyp": ["o"]}]


def test_report_lines_are_short():
    summary, _ = summarize(_results([i % 4 for i in range(60)], speakers=[f"spk{i}" for i in range(15)]), 1.0)
    lines = report_lines(summary, worst=5, speakers=10)
    assert lines[0].startswith("SER ") and "95 % CI" in lines[0]
    assert sum(line.startswith("    ref: ") for line in lines) == 5
    assert "the 10 with the most errors of 15" in "\n".join(lines)
    assert lines[-1].startswith("WER by duration: <2 s")


def test_report_lines_count_in_the_singular():
    summary, _ = summarize(_results([1, 2], speakers=["one", "two"], words=2), 1.0)
    text = "\n".join(report_lines(summary))
    assert "u0  1 error, WER 50 %" in text and "u1  2 errors, WER 100 %" in text
    assert "(1 error / 2 words, 1 utterance)" in text and "(2 errors / 2 words, 1 utterance)" in text


def _write_results(folder, n_errors: list[int], ids=None, words: int = 10):
    folder.mkdir(parents=True, exist_ok=True)
    ids = ids or [f"u{i}" for i in range(len(n_errors))]
    rows = [{"id": uid, "reference": "r", "substitutions": e, "deletions": 0, "insertions": 0, "ref_words": words}
            for uid, e in zip(ids, n_errors, strict=True)]
    (folder / "utterances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_compare_identical_systems(tmp_path):
    errors = [i % 5 for i in range(100)]
    c = compare_results(_write_results(tmp_path / "a", errors), _write_results(tmp_path / "b", errors))
    assert c["difference"] == 0 and c["difference_ci95"] == [0.0, 0.0]
    assert not c["significant"] and c["better"] is None and c["p_value"] == 1.0 and c["b_better_share"] == 0.0
    assert comparison_lines(c)[-1] == "no significant difference"


def test_compare_a_system_that_fixes_many_errors(tmp_path):
    errors_a = [i % 5 for i in range(100)]
    errors_b = [max(0, e - 1) for e in errors_a]
    c = compare_results(_write_results(tmp_path / "a", errors_a), _write_results(tmp_path / "b", errors_b))
    assert c["difference"] == pytest.approx(-0.08)
    assert c["significant"] and c["better"] == "B" and c["b_better_share"] == 1.0 and c["p_value"] == 0.0
    assert c["difference_ci95"][1] < 0
    assert comparison_lines(c)[-1] == "B is better than A (significant at 95 %)"
    reverse = compare_results(tmp_path / "b", tmp_path / "a")
    assert reverse["better"] == "A" and comparison_lines(reverse)[-1] == "A is better than B (significant at 95 %)"


def test_compare_a_small_noisy_difference_is_not_significant(tmp_path):
    errors_a = [i % 5 for i in range(30)]
    errors_b = list(errors_a)
    errors_b[3], errors_b[7] = errors_b[3] - 1, errors_b[7] + 2
    c = compare_results(_write_results(tmp_path / "a", errors_a), _write_results(tmp_path / "b", errors_b))
    assert not c["significant"] and c["difference_ci95"][0] < 0 < c["difference_ci95"][1]


def test_compare_uses_only_the_common_utterances(tmp_path):
    a = _write_results(tmp_path / "a", [1, 2, 3, 9], ids=["x", "y", "z", "only-a"])
    b = _write_results(tmp_path / "b", [3, 1, 2, 0, 0], ids=["z", "x", "y", "only-b1", "only-b2"])
    c = compare_results(a, b)
    assert (c["utterances"], c["only_in_a"], c["only_in_b"]) == (3, 1, 2)
    assert c["wer_a"] == c["wer_b"] == 6 / 30
    assert "(1 only in A, 2 only in B)" in "\n".join(comparison_lines(c))


def test_compare_bad_folders(tmp_path):
    good = _write_results(tmp_path / "good", [1, 2])
    with pytest.raises(InputError, match="missing.utterances.jsonl: not found"):
        compare_results(good, tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "utterances.jsonl").write_text('{"id": "u0", "substitutions": 0}\n{broken\n')
    with pytest.raises(InputError, match="utterances.jsonl, line 1: needs id"):
        compare_results(good, broken)
    (broken / "utterances.jsonl").write_text('{"id": "u0", "substitutions": 0, "deletions": 0, "insertions": 0, '
                                             '"ref_words": 3}\n{broken\n')
    with pytest.raises(InputError, match="broken.utterances.jsonl, line 2: not valid JSON"):
        compare_results(good, broken)
    with pytest.raises(InputError, match="no utterance ids in common"):
        compare_results(good, _write_results(tmp_path / "other", [1], ids=["zz"]))


def test_compare_from_the_command_line(tmp_path, capsys):
    a = _write_results(tmp_path / "a", [i % 5 for i in range(100)])
    b = _write_results(tmp_path / "b", [max(0, i % 5 - 1) for i in range(100)])
    assert main(["evaluate", "--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "on the 100 utterances both have" in out and "B - A: -8.00 points" in out
    assert out.splitlines()[-1] == "B is better than A (significant at 95 %)"
    assert main(["evaluate", "--compare", str(a), str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "missing" in err


@pytest.mark.parametrize("args", [["--output", "out"], [], ["--compare", "a", "b", "--manifest", "m.jsonl"],
                                  ["--compare", "a"]])
def test_evaluate_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", *args])
    assert e.value.code == 2
    assert "usage: asr evaluate" in capsys.readouterr().err


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path):
    """`asr evaluate --compare A B | head -1`: no traceback when the pipe closes, only a non-zero exit."""
    import subprocess
    import sys

    errors = [i % 5 for i in range(100)]
    a, b = _write_results(tmp_path / "a", errors), _write_results(tmp_path / "b", errors)
    proc = subprocess.Popen([sys.executable, "-m", "asr", "evaluate", "--compare", str(a), str(b)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader leaves before the command has written anything
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_report_lines_print_reference_and_hypothesis_normalised_alike():
    """AN4's upper-case references beside lower-case hypotheses looked like errors of case (issue 30)."""
    summary, _ = summarize([_decoded("a", "ENTER, Eight ONE.", "enter eight two")], 1.0)
    text = "\n".join(report_lines(summary))
    assert "    ref: enter eight one\n    hyp: enter eight two" in text
    assert "worst 1 utterance (errors, WER)" in text and "(1 utt)" in text


def test_comparison_lines_count_in_the_singular(tmp_path):
    a = _write_results(tmp_path / "a", [1, 2], ids=["x", "only-a"])
    b = _write_results(tmp_path / "b", [0], ids=["x"])
    (b / "utterances.jsonl").write_text((b / "utterances.jsonl").read_text().replace('"r"', '"other"'))
    text = "\n".join(comparison_lines(compare_results(a, b)))
    assert "on the 1 utterance both have" in text and "1 utterance has different references" in text


def test_a_manifest_with_nothing_readable_prints_no_score(tmp_path, capsys):
    """Every file missing: each named on stderr, then one line saying nothing was scored; no 'WER 0.00 %'."""
    manifest = tmp_path / "gone.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"u{i}", "audio": f"missing-{i}.wav", "duration": 1.0,
                                            "text": "yes"}) + "\n" for i in range(2)))
    assert main(["evaluate", "--model", "an4", "--manifest", str(manifest), "--decoder", "greedy",
                 "--output", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "WER" not in captured.out
    assert captured.err.count("missing-") == 2
    assert captured.err.strip().splitlines()[-1] == (
        f"error: {manifest}: none of its 2 utterances could be read, so nothing was scored")
