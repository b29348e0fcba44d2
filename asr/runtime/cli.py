"""`asr-lite` (also `python -m asr.runtime`): transcribe files with an exported model, without PyTorch.

    asr-lite --model exported/an4 recording.wav talks/ --format srt,json --output-dir out/

The options are `asr transcribe`'s (the decoding flags are the same code, `asr.cli.options`); the inputs are
files, folders (searched recursively) and glob patterns. Without --output-dir, txt goes to standard output
and other formats to <name>.<format> in the current folder. Exit code 1 when any input failed, each
failure listed once at the end as `error: <file>: <problem>`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from asr.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    from asr.cli import options

    p = argparse.ArgumentParser(prog="asr-lite", description="Transcribe audio with a model exported by `asr "
                                "export`, with onnxruntime and numpy (no PyTorch). See docs/runtime.md.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="audio files, folders, or glob patterns (quoted); - reads standard input")
    p.add_argument("--model", metavar="NAME|DIR", help="a bundled model's name or an exported model folder (asr "
                   "export --out DIR); default: english")
    options.add_decoder_options(p, nbest=True)
    out = p.add_argument_group("output")
    out.add_argument("--format", default="txt", help="comma-separated formats from txt, json, srt, vtt, tsv, or all")
    out.add_argument("--output-dir", metavar="DIR", help="write <name>.<format> files here")
    out.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    run = p.add_argument_group("running")
    run.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: the cores this process may use)")
    run.add_argument("--batch-size", type=int, default=8, metavar="N", help="segments run together (default 8)")
    seg = p.add_argument_group("long recordings")
    seg.add_argument("--max-segment-seconds", type=float, default=30.0, metavar="S", help="longest segment (30)")
    seg.add_argument("--min-segment-seconds", type=float, default=1.0, metavar="S", help="shortest segment (1)")
    seg.add_argument("--split-pause", type=float, metavar="S",
                     help="end a segment at the first pause this long (default: the model's, else 0.5); 0: cut "
                          "only near the longest")
    return p


def main(argv: list[str] | None = None) -> int:
    from asr.cli import run

    return run(_transcribe, build_parser().parse_args(argv))


def _transcribe(args) -> int:
    from asr.cli import options
    from asr.inputs import drop_output_collisions, find_audio, stdin_to_file
    from asr.outputs import FORMATS, SubtitleOptions, output_paths, write_outputs
    from asr.runtime import load

    formats = list(FORMATS) if args.format == "all" else [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats or set(formats) - set(FORMATS):
        raise InputError(f"--format: unknown format in {args.format!r}; choose from {', '.join(FORMATS)} or all")
    out_dir = Path(args.output_dir) if args.output_dir else (None if formats == ["txt"] else Path("."))
    for name in ("threads", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    transcriber = load(args.model, threads=args.threads, **options.decoder_overrides(args))
    with contextlib.ExitStack() as stack:
        paths, stdin = list(args.paths), None
        if "-" in paths:  # standard input: copied to a file first, as `asr transcribe` does
            stdin = stdin_to_file(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asr-"))))
            paths = [str(stdin) if p == "-" else p for p in paths]
        files, failures = find_audio(paths)
        files, collisions = drop_output_collisions([(f, Path("stdin") if f == stdin else stem) for f, stem in files])
        failures += collisions
        total = len(files) + len(failures)
        for path, stem in files:
            name = "-" if path == stdin else path
            try:
                if out_dir is not None and not args.overwrite:
                    existing = [str(p) for p in output_paths(out_dir / stem, formats) if p.exists()]
                    if existing:
                        raise InputError(f"{name}: would overwrite {', '.join(existing)}; --overwrite replaces them")
                result = transcriber.transcribe(path, **options.segment_options(args))
            except InputError as e:
                failures.append(str(e))
                continue
            if result.error:
                failures.append(f"{result.error}; transcribed the {result.duration:.1f} s before it")
            if result.warning:
                print(f"warning: {name}: {result.warning}", file=sys.stderr)
            if out_dir is None:
                print(result.text if total == 1 else f"{name}\t{result.text}", flush=True)
            else:
                write_outputs(result, out_dir / stem, formats, SubtitleOptions())
    if failures:
        print(f"{len(failures)} of {total} inputs failed:", file=sys.stderr)
        for f in failures:
            print(f"error: {f}", file=sys.stderr)
        return 1
    return 0
