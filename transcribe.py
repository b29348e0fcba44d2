"""Same as `asr transcribe ...`."""
import sys

from asr.cli import main

if __name__ == "__main__":
    sys.exit(main(["transcribe", *sys.argv[1:]]))
