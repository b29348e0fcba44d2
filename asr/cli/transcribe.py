"""`asr transcribe`: audio files, folders, globs and standard input to text and subtitles."""

from __future__ import annotations

import sys
from pathlib import Path

from asr.cli import options
from asr.errors import InputError


def add_transcribe(sub) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio files, folders, globs or standard input",
                       description="Transcribe audio files (wav, flac, ogg, sph, mp3, ...), folders (searched "
                                   "recursively), glob patterns ('talks/**/*.flac', quoted) and '-' (standard "
                                   "input). Long recordings are read in blocks and cut at pauses, so memory stays "
                                   "bounded whatever the length. Without --output-dir, txt (the default format) goes "
                                   "to standard output and other formats to <name>.<format> files in the current "
                                   "folder. An existing output file is never replaced without --overwrite. Files "
                                   "that cannot be read are skipped and listed at the end, once each; a file "
                                   "damaged part-way is transcribed up to the damage and listed too. The exit code "
                                   "is 1 if any failed.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders, glob patterns, or - for stdin")
    options.add_model(p)
    options.add_decoder_options(p, nbest=True)
    out = p.add_argument_group("output")
    out.add_argument("--format", default="txt",
                     help="comma-separated output formats from txt, json, srt, vtt, tsv, or 'all' (default txt)")
    out.add_argument("--output-dir", metavar="DIR",
                     help="write <name>.<format> files here, mirroring the tree of folder and glob inputs (default: "
                          "the current folder for formats other than txt alone). Inputs whose names differ only in "
                          "the extension (a.flac, a.mp3) keep it in their outputs' names (a.flac.srt, a.mp3.srt)")
    out.add_argument("--overwrite", action="store_true",
                     help="replace output files that already exist (without it, an input whose output exists is "
                          "reported and skipped)")
    out.add_argument("--skip-existing", action="store_true",
                     help="skip inputs whose every requested output file already exists (resume a batch job)")
    out.add_argument("--max-line-chars", type=int, default=42, metavar="N",
                     help="srt/vtt: characters per subtitle line (default 42)")
    out.add_argument("--max-lines", type=int, default=2, metavar="N", help="srt/vtt: lines per cue (default 2)")
    out.add_argument("--max-cue-seconds", type=float, default=7.0, metavar="S",
                     help="srt/vtt: longest cue (default 7)")
    out.add_argument("--pause-seconds", type=float, default=0.6, metavar="S",
                     help="srt/vtt: a longer pause between words starts a new cue (default 0.6)")
    run = p.add_argument_group("running")
    run.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    options.add_precision(run)
    run.add_argument("--threads", type=int, metavar="N", help="CPU threads for the model (default: torch's choice)")
    run.add_argument("--batch-size", type=int, default=8, metavar="N",
                     help="segments of a recording run through the model together (default 8)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (it only shows on a terminal)")
    seg = p.add_argument_group("long recordings", "Audio is cut into segments at pauses and decoded segment by "
                                                  "segment; word times stay relative to the file's start.")
    seg.add_argument("--max-segment-seconds", type=float, default=30.0, metavar="S",
                     help="longest segment; where no pause comes, cut here with 2 s of overlap (default 30)")
    seg.add_argument("--min-segment-seconds", type=float, default=1.0, metavar="S",
                     help="no cut before a segment is this long (default 1)")
    seg.add_argument("--split-pause", type=float, metavar="S",
                     help="end a segment at the first pause this long (default: the model's if it stores one, "
                          "else 0.5); 0: cut only near --max-segment-seconds, at the best pause")
    p.set_defaults(func=_transcribe)


def _parse_formats(spec: str) -> list[str]:
    from asr.outputs import FORMATS

    formats = list(FORMATS) if spec == "all" else [f.strip() for f in spec.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(f"--format: unknown format {', '.join(unknown) or spec!r}; choose from "
                         f"{', '.join(FORMATS)} or all")
    return formats


def _transcribe(args) -> int:
    import contextlib
    import tempfile

    from asr.inputs import find_audio, stdin_to_file
    from asr.outputs import SubtitleOptions

    formats = _parse_formats(args.format)
    subtitle = SubtitleOptions(max_line_chars=args.max_line_chars, max_lines=args.max_lines,
                               max_cue_seconds=args.max_cue_seconds, pause_seconds=args.pause_seconds)
    out_dir = _output_dir(args, formats)
    _check_numbers(args)
    with contextlib.ExitStack() as stack:
        paths, stdin = list(args.paths), None
        if "-" in paths:
            stdin = stdin_to_file(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asr-"))))
            paths = [str(stdin) if p == "-" else p for p in paths]
        files, failures = find_audio(paths)
        files = [(f, Path("stdin") if f == stdin else stem) for f, stem in files]
        total = len(files) + len(failures)
        if out_dir is not None:
            files = _plan_outputs(files, out_dir, formats, args, failures)
        failures += _run(files, args, out_dir, formats, subtitle, stdin)
    if failures:  # each failure once, here, rather than also as it happens
        print(f"{len(failures)} of {total} inputs failed:", file=sys.stderr)
        for f in failures:
            print(f"error: {f}", file=sys.stderr)
        return 1
    return 0


def _output_dir(args, formats: list[str]) -> Path | None:
    """Where output files go; None: the text goes to standard output."""
    if args.nbest and args.nbest > 1 and "json" not in formats:
        raise InputError(f"--nbest {args.nbest}: the next best transcripts go to the json output: add --format json")
    if args.output_dir is not None:
        return Path(args.output_dir)
    if formats != ["txt"]:
        return Path(".")  # as Whisper does: talk.srt beside where the command runs
    if args.skip_existing:
        raise InputError("--skip-existing needs output files: add --output-dir DIR")
    return None


def _check_numbers(args) -> None:
    for name in ("threads", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.min_segment_seconds <= args.max_segment_seconds:
        raise InputError("need 0 < --min-segment-seconds <= --max-segment-seconds")
    if args.split_pause and args.split_pause < 0.3:
        raise InputError("--split-pause must be 0 (off) or at least 0.3 s, the shortest pause detected")


def _plan_outputs(files: list, out_dir: Path, formats: list[str], args, failures: list[str]) -> list:
    """The inputs to transcribe: each with an output name of its own (`drop_output_collisions`), less
    those whose outputs all exist with --skip-existing; an input one of whose outputs exists is added
    to `failures` without --overwrite, before any time is spent on it."""
    from asr.inputs import drop_output_collisions
    from asr.outputs import output_paths

    files, collisions = drop_output_collisions(files)
    failures += collisions
    todo, done = [], 0
    for f, stem in files:
        existing = [p for p in output_paths(out_dir / stem, formats) if p.exists()]
        if args.skip_existing and len(existing) == len(formats):
            done += 1
        elif existing and not args.overwrite:
            failures.append(f"{f}: would overwrite {', '.join(map(str, existing))}; --overwrite replaces existing "
                            "outputs, --skip-existing skips inputs whose outputs all exist")
        else:
            todo.append((f, stem))
    if done:
        print(f"skipping {done} inputs whose outputs exist", file=sys.stderr)
    return todo


def _run(files: list, args, out_dir: Path | None, formats: list[str], subtitle, stdin) -> list[str]:
    """Transcribe `files` and write or print each result -> the problems met."""
    import time

    from asr.catalog import engine_for
    from asr.outputs import write_outputs
    from asr.runtime import load as load_exported
    from asr.transcribe import Transcriber

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if files and engine_for(args.model, args.engine) == "onnx":  # an export: the torch-free runtime (docs/runtime.md)
        transcriber = load_exported(args.model, threads=args.threads, **options.decoder_overrides(args))
    else:
        transcriber = (Transcriber.load(args.model, args.device, decoder=options.decoder_overrides(args),
                                        precision=args.precision) if files else None)
    if files and args.nbest and args.nbest > 1 and transcriber.decoder_settings.get("decoder") == "greedy":
        raise InputError(f"--nbest {args.nbest} needs beam search, and the decoder is greedy: add --decoder beam")
    failures: list[str] = []
    bar = _files_progress(len(files), args.no_progress)
    audio_seconds, start = 0.0, time.perf_counter()
    for path, stem in files:
        try:
            result = transcriber.transcribe(path, **options.segment_options(args))
        except InputError as e:
            failures.append(str(e))
            bar.update()
            continue
        if result.error:  # damaged part-way: what came before is transcribed and written, and reported
            failures.append(f"{result.error}; transcribed the {result.duration:.1f} s before it")
        audio_seconds += result.duration
        rtf = (time.perf_counter() - start) / max(audio_seconds, 1e-9)
        bar.set_postfix({"audio": f"{audio_seconds / 3600:.2f} h", "RTF": f"{rtf:.3f}"}, refresh=False)
        bar.update()
        if note := _nbest_note(path, result, args.nbest, transcriber.decoder_settings):
            bar.write(f"note: {note}", file=sys.stderr)
        if out_dir is None:
            name = "-" if path == stdin else path
            bar.write(result.text if len(files) == 1 else f"{name}\t{result.text}", file=sys.stdout)
            sys.stdout.flush()
        else:
            write_outputs(result, out_dir / stem, formats, subtitle)
        if result.warning:  # probably wrong, or no speech heard (asr.confidence); also in the json output
            bar.write(f"warning: {'-' if path == stdin else path}: {result.warning}", file=sys.stderr)
    bar.close()
    return failures


def _nbest_note(path, result, nbest: int | None, settings: dict) -> str | None:
    """Why a transcript has fewer than the `nbest` - 1 alternatives asked for, if it has."""
    wanted = (nbest or 1) - 1
    if len(result.alternatives) >= wanted or not result.segments:
        return None
    if len(result.segments) > 1:
        return (f"{path}: no alternatives: --nbest keeps them for a recording of one segment, and this one was "
                f"cut into {len(result.segments)} at pauses")
    threshold = settings.get("beam_threshold") or 25.0  # BeamOptions' default
    return (f"{path}: {len(result.alternatives)} of the {wanted} alternatives asked for: beam search kept no other "
            f"distinct transcript within --beam-threshold {threshold:g} of the best; a larger one keeps more")


def _files_progress(total: int, off: bool):
    """A bar over files on standard error: shown on a terminal only, never in logs or pipes."""
    from tqdm import tqdm

    return tqdm(total=total, unit="file", disable=True if off else None, dynamic_ncols=True, leave=False)
