"""Same as `asr train ...`; also the entry point for `torchrun --nproc_per_node=K train.py ...`."""
import sys

from asr.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
