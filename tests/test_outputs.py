import json
import random
import re

import pytest

from asr.alignment import Word
from asr.errors import InputError
from asr.outputs import Segment, SubtitleOptions, Transcript, cues, render, write_outputs

TIME = r"(\d{{2,}}):([0-5]\d):([0-5]\d){sep}(\d{{3}})"


def _seconds(h, m, s, ms) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def _parse_cue(block: list[str], sep: str) -> tuple[float, float, list[str]]:
    time = TIME.format(sep=sep)
    m = re.fullmatch(f"{time} --> {time}", block[0])
    assert m, f"bad timing line {block[0]!r}"
    lines = block[1:]
    assert lines and all(line and line == line.strip() and "-->" not in line for line in lines), block
    return _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:]), lines


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    """A strict SRT reader: 1-based numbering, HH:MM:SS,mmm, one blank line between cues."""
    if not text:
        return []
    assert text.endswith("\n") and not text.endswith("\n\n")
    parsed = []
    for i, block in enumerate(text[:-1].split("\n\n"), 1):
        number, *rest = block.split("\n")
        assert number == str(i)
        parsed.append(_parse_cue(rest, ","))
    return parsed


def parse_vtt(text: str) -> list[tuple[float, float, list[str]]]:
    """A strict WebVTT reader: the header, then cues of HH:MM:SS.mmm timings and text lines."""
    assert text.startswith("WEBVTT\n") and text.endswith("\n") and not text.endswith("\n\n")
    body = text[len("WEBVTT\n"):]
    if not body:
        return []
    assert body.startswith("\n")
    return [_parse_cue(block.split("\n"), ".") for block in body[1:-1].split("\n\n")]


def check_cues(parsed, words: list[str], o: SubtitleOptions):
    """Ordered, non-overlapping cues that fit the options and hold every word once, in order."""
    prev_end = 0.0
    for start, end, lines in parsed:
        assert prev_end <= start <= end
        prev_end = end
        cue_words = " ".join(lines).split()
        assert 1 <= len(lines) <= o.max_lines
        assert all(len(line) <= o.max_line_chars or " " not in line for line in lines), lines
        assert end - start <= o.max_cue_seconds + 0.0015 or len(cue_words) == 1
    assert [w for _, _, lines in parsed for w in " ".join(lines).split()] == words


def long_transcript(seed: int = 0, n_segments: int = 30, offset: float = 3590.0) -> Transcript:
    """Segments of words with short gaps, pauses, the odd over-long word and the odd very slow one."""
    rng = random.Random(seed)
    t, segments = offset, []
    for _ in range(n_segments):
        words = []
        for _ in range(rng.randint(1, 40)):
            t += rng.choice([0.0, 0.05, 0.1, 0.3, 0.7, 1.5])
            length = rng.choice([1, 2, 4, 7, 12, 50])
            text = "".join(rng.choice("abcdefghij") for _ in range(length))
            duration = rng.choice([0.1, 0.3, 0.8, 9.0]) if length < 50 else 2.0
            words.append(Word(text, round(t, 3), round(t + duration, 3), 0.9))
            t = round(t + duration, 3)
        segments.append(Segment(words[0].start, words[-1].end, " ".join(w.word for w in words), words))
        t += 2.0
    all_words = [w for s in segments for w in s.words]
    return Transcript(" ".join(s.text for s in segments), t + 1.0, segments, all_words)


@pytest.mark.parametrize("options", [SubtitleOptions(), SubtitleOptions(max_line_chars=16, max_lines=1,
                                                                        max_cue_seconds=3.0, pause_seconds=0.2)])
def test_subtitles_parse_back_and_keep_every_word(options, tmp_path):
    t = long_transcript()
    write_outputs(t, tmp_path / "long", ["srt", "vtt"], options)
    srt, vtt = parse_srt((tmp_path / "long.srt").read_text()), parse_vtt((tmp_path / "long.vtt").read_text())
    assert srt == vtt and len(srt) > len(t.segments)
    check_cues(srt, [w.word for w in t.words], options)


def test_cues_break_at_pauses_and_hold_short_cues():
    words = [Word("one", 0.0, 0.2, 1.0), Word("two", 0.4, 0.5, 1.0), Word("three", 1.2, 1.5, 1.0),
             Word("four", 10.0, 10.1, 1.0)]
    t = Transcript("one two three four", 11.0, [Segment(0.0, 10.1, "one two three four", words)], words)
    got = cues(t)
    assert [c.lines for c in got] == [["one two"], ["three"], ["four"]]  # gaps of 0.7 and 8.5 s are pauses
    assert [(c.start, c.end) for c in got] == [(0.0, 0.8), (1.2, 2.0), (10.0, 10.8)]
    tight = cues(t, SubtitleOptions(pause_seconds=1.0, min_cue_seconds=0.0))
    assert [(c.start, c.end, c.lines) for c in tight] == [(0.0, 1.5, ["one two three"]), (10.0, 10.1, ["four"])]


def test_min_duration_never_reaches_into_the_next_cue():
    words = [Word("a", 0.0, 0.1, 1.0), Word("b", 0.8, 0.9, 1.0)]
    got = cues(Transcript("a b", 0.95, [Segment(0.0, 0.9, "a b", words)], words))
    assert [(c.start, c.end) for c in got] == [(0.0, 0.8), (0.8, 0.95)]  # the last one stops at the audio's end


def test_cues_break_at_segment_boundaries():
    first, second = [Word("hello", 0.0, 0.4, 1.0)], [Word("again", 0.45, 0.8, 1.0)]
    t = Transcript("hello again", 1.0, [Segment(0.0, 0.4, "hello", first), Segment(0.45, 0.8, "again", second)],
                   first + second)
    assert [(c.start, c.end, c.lines) for c in cues(t)] == [(0.0, 0.45, ["hello"]), (0.45, 1.0, ["again"])]


def test_overlapping_word_times_never_make_overlapping_cues():
    first, second = [Word("late", 0.0, 1.0, 1.0)], [Word("early", 0.9, 0.95, 1.0), Word("on", 1.0, 1.4, 1.0)]
    t = Transcript("late early on", 2.0, [Segment(0.0, 1.0, "late", first), Segment(0.9, 1.4, "early on", second)])
    got = cues(t)
    assert [(c.start, c.end, c.lines) for c in got] == [(0.0, 1.0, ["late"]), (1.0, 1.8, ["early on"])]


def test_transcript_words_are_split_by_segment_times_when_segments_have_none():
    words = [Word("a", 0.0, 0.3, 1.0), Word("b", 0.35, 0.6, 1.0), Word("c", 0.65, 0.9, 1.0)]
    t = Transcript("a b c", 1.0, [Segment(0.0, 0.6, "a b"), Segment(0.65, 0.9, "c")], words)
    assert [c.lines for c in cues(t)] == [["a b"], ["c"]]
    assert [c.lines for c in cues(Transcript("a b c", 1.0, [], words))] == [["a b c"]]


def test_lines_wrap_greedily_and_a_long_word_gets_its_own_line():
    texts = ["aaaa", "bbbb", "cccc", "dddddddddddddddddddd", "ee", "ff", "gg"]
    words = [Word(w, i * 0.2, i * 0.2 + 0.1, 1.0) for i, w in enumerate(texts)]
    t = Transcript(" ".join(texts), 2.0, [Segment(0.0, 1.3, " ".join(texts), words)], words)
    got = cues(t, SubtitleOptions(max_line_chars=10, max_lines=2))
    assert [c.lines for c in got] == [["aaaa bbbb", "cccc"], ["dddddddddddddddddddd", "ee ff gg"]]


def test_cues_are_cut_at_max_cue_seconds():
    words = [Word(f"w{i}", i * 1.0, i * 1.0 + 0.9, 1.0) for i in range(10)]
    t = Transcript("", 10.0, [Segment(0.0, 9.9, " ".join(w.word for w in words), words)], words)
    got = cues(t, SubtitleOptions(max_cue_seconds=3.0))
    assert [c.lines for c in got] == [["w0 w1 w2"], ["w3 w4 w5"], ["w6 w7 w8"], ["w9"]]


def test_hour_long_times():
    words = [Word("hello", 0.5, 0.9, 0.8), Word("world", 3661.0, 3661.25, 0.7)]
    t = Transcript("hello world", 3662.0, [Segment(0.5, 3661.25, "hello world")], words)
    assert render(t, "srt").split("\n")[4:7] == ["2", "01:01:01,000 --> 01:01:01,800", "world"]
    assert "01:01:01.000 --> 01:01:01.800\nworld\n" in render(t, "vtt", SubtitleOptions())
    long = Transcript("x", 3662.0, [Segment(3661.0, 3661.25, "x")])
    assert render(long, "srt", SubtitleOptions(min_cue_seconds=0)) == "1\n01:01:01,000 --> 01:01:01,250\nx\n"


def test_writers(tmp_path):
    """The shape `Transcriber.transcribe` returns for one utterance: one segment, words on the transcript."""
    words = [Word("hello", 0.5, 0.9, 0.8), Word("world", 1.0, 3661.25, 0.7)]
    t = Transcript("hello world", 3662.0, [Segment(0.5, 3661.25, "hello world")], words)
    paths = write_outputs(t, tmp_path / "x", ["txt", "json", "srt", "vtt", "tsv"])
    assert [p.name for p in paths] == ["x.txt", "x.json", "x.srt", "x.vtt", "x.tsv"]
    assert (tmp_path / "x.txt").read_text() == "hello world\n"
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["text"] == "hello world" and doc["words"][1] == {"word": "world", "start": 1.0, "end": 3661.25,
                                                                 "confidence": 0.7}
    assert (tmp_path / "x.srt").read_text() == ("1\n00:00:00,500 --> 00:00:01,000\nhello\n\n"
                                                "2\n00:00:01,000 --> 01:01:01,250\nworld\n")
    assert (tmp_path / "x.vtt").read_text() == ("WEBVTT\n\n00:00:00.500 --> 00:00:01.000\nhello\n\n"
                                                "00:00:01.000 --> 01:01:01.250\nworld\n")
    assert (tmp_path / "x.tsv").read_text() == "start\tend\ttext\n500\t3661250\thello world\n"


def test_segments_without_word_times_fall_back_to_their_text():
    short = Segment(1.0, 2.5, "just a few words")
    long = Segment(3.0, 33.0, " ".join(f"word{i}" for i in range(40)))
    t = Transcript(short.text + " " + long.text, 40.0, [short, long])
    got = cues(t)
    assert (got[0].start, got[0].end, got[0].lines) == (1.0, 2.5, ["just a few words"])
    assert got[1].start == 3.0 and got[-1].end == 33.0 and len(got) > 2
    check_cues(parse_srt(render(t, "srt")), t.text.split(), SubtitleOptions())


def test_empty_transcript_writes_valid_empty_files(tmp_path):
    t = Transcript("", 2.0)
    write_outputs(t, tmp_path / "e", ["txt", "json", "srt", "vtt", "tsv"])
    assert parse_srt((tmp_path / "e.srt").read_text()) == []
    assert (tmp_path / "e.vtt").read_text() == "WEBVTT\n" and parse_vtt("WEBVTT\n") == []
    assert (tmp_path / "e.tsv").read_text() == "start\tend\ttext\n"
    assert (tmp_path / "e.txt").read_text() == "\n"
    assert Transcript.from_dict(json.loads((tmp_path / "e.json").read_text())) == t


def test_json_round_trips_with_segment_words(tmp_path):
    t = long_transcript(n_segments=3)
    t.alternatives = [{"text": "other", "score": -1.5}]
    write_outputs(t, tmp_path / "t", ["json"])
    doc = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert doc["segments"][1]["words"][0] == {"word": t.segments[1].words[0].word,
                                              "start": t.segments[1].words[0].start,
                                              "end": t.segments[1].words[0].end, "confidence": 0.9}
    assert Transcript.from_dict(doc) == t


def test_txt_and_tsv_have_one_line_per_segment():
    t = Transcript("caf\u00e9 one two", 5.0, [Segment(0.0, 1.0, "caf\u00e9 one"), Segment(2.0, 3.25, "two\tthree")])
    assert render(t, "txt") == "caf\u00e9 one\ntwo\tthree\n"
    assert render(t, "tsv") == "start\tend\ttext\n0\t1000\tcaf\u00e9 one\n2000\t3250\ttwo three\n"
    assert "caf\u00e9" in render(t, "json")


def test_vtt_escapes_markup():
    words = [Word("R&B", 0.0, 0.5, 1.0), Word("<3", 0.5, 1.0, 1.0)]
    t = Transcript("R&B <3", 1.0, [Segment(0.0, 1.0, "R&B <3", words)], words)
    assert render(t, "vtt").endswith("\nR&amp;B &lt;3\n")
    assert render(t, "srt").endswith("\nR&B <3\n")


@pytest.mark.parametrize("bad", [{"max_line_chars": 0}, {"max_lines": 0}, {"max_cue_seconds": 0.5},
                                 {"pause_seconds": -1}, {"max_cue_seconds": float("nan")}])
def test_bad_subtitle_options_are_input_errors(bad):
    with pytest.raises(InputError, match="--"):
        SubtitleOptions(**bad)


def test_unknown_format_is_an_input_error():
    with pytest.raises(InputError, match="unknown output format 'doc'"):
        render(Transcript("", 0.0), "doc")
