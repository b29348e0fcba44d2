import json

from asr.data import Utterance
from asr.decoding import Hypothesis
from asr.evaluate import Decoded, summarize


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
