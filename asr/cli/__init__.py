"""The `asr` command: prepare, train, evaluate, transcribe, serve. argparse only; heavy imports happen per command.

One module per command (or pair of related ones): each has `add_<command>(subparsers)`, which declares the
options, and the function the parsed arguments are handed to.

Every subcommand exits 0 on success, 1 when something failed (with a one-line `error:` message per
problem on stderr, never a traceback for bad input) and 2 for invalid usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from asr.errors import InputError, InstallError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args)


def run(func, args) -> int:
    """`func(args)` as a command runs it -> the exit code: one `error:` line for bad input or a missing
    install, 130 on Ctrl-C, quiet when the reader of standard output goes away. `asr-lite` runs this way too."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        code = func(args) or 0
        sys.stdout.flush()  # here, where a reader that left is caught below, not at exit
        return code
    except (InputError, InstallError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output left (`asr evaluate ... | head -1`): stop quietly, as Unix tools do, and point
        # stdout at /dev/null so that Python's flush at exit does not raise again (the `signal` module docs' advice).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def build_parser() -> argparse.ArgumentParser:
    # The command modules here, not at the top: `asr-lite` imports `run` from this package and needs none of them.
    from asr import __version__
    from asr.cli import calibrate, evaluate, lm, models, prepare, serve, train, transcribe
    from asr.cli import export as export_command

    parser = argparse.ArgumentParser(prog="asr", description="BiLSTM-CTC speech recognition.")
    parser.add_argument("--version", action="version", version=f"asr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prepare.add_prepare(sub)
    prepare.add_doctor(sub)
    train.add_train(sub)
    train.add_average(sub)
    evaluate.add_evaluate(sub)
    lm.add_lm(sub)
    transcribe.add_transcribe(sub)
    calibrate.add_calibrate(sub)
    models.add_models(sub)
    export_command.add_export(sub)
    serve.add_serve(sub)
    return parser
