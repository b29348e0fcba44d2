"""`python -m asr.runtime PATH... --model DIR`: the same as `asr-lite` (see asr.runtime.cli)."""

import sys

from asr.runtime.cli import main

sys.exit(main())
