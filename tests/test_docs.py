"""The docs and recipes name only options that exist: every `asr ...` command written in them is checked
against the command-line parser, every `python bench/... .py` command against its script's options, and
every option written alone (`--split-pause`) against all of them, so a renamed or removed flag fails
here rather than in a user's shell. The README stays short and links every page of docs/, and the links
between the docs lead to files that exist."""

import argparse
import functools
import re
from pathlib import Path

import pytest

from asr.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([*REPO.glob("*.md"), *REPO.glob("docs/**/*.md"), *REPO.glob("models/**/*.md"),
               *REPO.glob("examples/**/*.md"), *REPO.glob("recipes/**/*.md"), *REPO.glob("recipes/**/*.sh")])
PAGES = sorted(REPO.glob("docs/**/*.md"))
README_LIMIT = 12 * 1024  # bytes: the README is the first hour; depth goes to docs/
# `python train.py ...` and `python transcribe.py ...` are `asr train` and `asr transcribe`.
COMMAND = re.compile(r"(?:\basr|\b(train|transcribe)\.py)((?:\s+[a-z][a-z0-9-]*)*)")
SCRIPT = re.compile(r"\bpython3?\s+((?:bench|recipes)/[\w/.-]+\.py)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], set[str]]:
    """{subcommand path: its option strings} for the whole command tree."""
    found = {path: {s for a in parser._actions for s in a.option_strings}}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_options(sub, (*path, name)))
    return found


OPTIONS = _options(build_parser())


@functools.cache
def _script_options(script: str) -> frozenset[str]:
    """The options a bench or recipe script declares (read from its source: importing it may need more)."""
    source = (REPO / script).read_text()
    return frozenset({"-h", "--help", *re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", source)})


def _inline_code(markdown: str) -> list[str]:
    """The `...` spans of a Markdown text, outside its code blocks."""
    return re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", markdown, flags=re.S))


def _snippets(path: Path) -> list[str]:
    """Shell commands as written: a script's lines, or a Markdown file's code blocks and inline code, with
    backslash-continued lines joined."""
    text = path.read_text()
    if path.suffix == ".sh":
        parts = [text]
    else:
        parts = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S) + _inline_code(text)
    lines = []
    for part in parts:
        lines += re.sub(r"\\\n\s*", " ", part).splitlines()
    # one command per piece: pipes, command lists and substitutions start new ones
    return [piece for line in lines for piece in re.split(r"\||&&|;|\$\(|\)|#", line)]


def _commands(path: Path):
    """(subcommand path or script, flags) of each asr command and bench or recipe script run in the file."""
    for piece in _snippets(path):
        for m in SCRIPT.finditer(piece):
            yield m.group(1), FLAG.findall(piece[m.end():])
        for m in COMMAND.finditer(piece):
            words = ([m.group(1)] if m.group(1) else []) + m.group(2).split()
            path_ = ()
            for word in words:  # the longest run of words that names a subcommand
                if (*path_, word) not in OPTIONS:
                    break
                path_ = (*path_, word)
            if not path_:
                continue  # "asr" in prose, or the bare program name
            yield path_, FLAG.findall(piece[m.end():])


def _unknown(doc: Path) -> list[str]:
    unknown = []
    for cmd, flags in _commands(doc):
        if isinstance(cmd, str):
            known, name = _script_options(cmd), f"python {cmd}"
        else:
            known, name = OPTIONS[cmd] | OPTIONS[()], "asr " + " ".join(cmd)
        unknown += [f"{name} {flag}" for flag in flags if flag not in known]
    if doc.suffix == ".md":  # options written on their own, e.g. `--split-pause`
        every = set().union(*OPTIONS.values(), *(_script_options(str(p.relative_to(REPO)))
                                                 for p in [*REPO.glob("bench/*.py"), *REPO.glob("recipes/**/*.py")]))
        unknown += [flag for span in _inline_code(doc.read_text()) if span.startswith("--")
                    for flag in FLAG.findall(span) if flag not in every]
    return unknown


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_documented_flags_exist(doc):
    unknown = _unknown(doc)
    assert not unknown, f"{doc.name} names options that do not exist: {unknown}"


def test_the_checker_reads_commands_and_catches_wrong_flags(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("Run `asr train --train m.jsonl --epochs 3 --no-such-flag`, then `--split-pause` or `--nope`:\n"
                   "```bash\nasr lm tune --model m.pt \\\n    --lm-weights 0,1 | tee log   # --not-a-flag\n"
                   "python transcribe.py a.wav --format srt\n"
                   "python bench/bench_long_audio.py --segment-only --x\n```\n")
    assert sorted(_commands(doc), key=str) == sorted([
        (("train",), ["--train", "--epochs", "--no-such-flag"]), (("lm", "tune"), ["--model", "--lm-weights"]),
        (("transcribe",), ["--format"]), ("bench/bench_long_audio.py", ["--segment-only", "--x"])], key=str)
    assert _unknown(doc) == ["python bench/bench_long_audio.py --x", "asr train --no-such-flag", "--nope"]


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    linked = {Path(target.split("#")[0]) for target in re.findall(r"\]\(([^)\s]+)\)", readme)}
    assert PAGES, "docs/ holds no pages"
    missing = [str(p.relative_to(REPO)) for p in PAGES if p.relative_to(REPO) not in linked]
    assert not missing, f"docs pages README.md does not link to: {missing}"


def test_readme_stays_short():
    size = len((REPO / "README.md").read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; move depth to docs/ (limit {README_LIMIT})"


@pytest.mark.parametrize("doc", [REPO / "README.md", *PAGES], ids=lambda p: str(p.relative_to(REPO)))
def test_local_links_lead_to_files(doc):
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", doc.read_text())
               if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    broken = [t for t in targets if not (doc.parent / t).exists()]
    assert not broken, f"{doc.name} links to files that do not exist: {broken}"
