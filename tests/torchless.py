"""A Python program that runs a command's `main` where torch and torchaudio cannot be imported: for the tests
that prove the light runtime (and `asr serve` with an exported model) never loads them."""

from __future__ import annotations

_SCRIPT = """
import importlib.abc, sys
attempts = []
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("torch", "torchaudio"):
            attempts.append(name)
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, NoTorch())
try:
    import torch
    sys.exit("the blocker does not block")
except ImportError:
    attempts.clear()
from {module} import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("torch", "torchaudio"))
print("torch imports tried:", attempts, "loaded:", loaded, file=sys.stderr)
sys.exit(code)
"""


def without_torch(module: str) -> str:
    """The program (for `python -c`) that runs `module.main(argv)` with torch blocked; it ends by printing
    `torch imports tried: [...] loaded: [...]` to standard error."""
    return _SCRIPT.format(module=module)
