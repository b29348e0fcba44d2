"""Keeping a long transcription's memory bounded: `HeapTrimmer` gives glibc's freed heap back to the system.

Used by both transcribers (`asr.transcribe`, `asr.runtime.transcribe`); nothing here imports torch.
"""

from __future__ import annotations


class HeapTrimmer:
    """Give freed heap memory back to the system when the resident size has grown by `slack` bytes.

    glibc keeps the memory of freed tensors whose sizes vary from batch to batch (every segment has
    its own length) in its heaps rather than returning it, so an hour of audio ratcheted the
    resident size up from 0.7 to 1.45 GB although little of it was live. Padding batches to whole
    seconds halved that growth (0.25 s, with batches sorted by length, does as well); `malloc_trim`
    after 96 MB of growth bounds the rest (BENCHMARKS.md). Elsewhere than glibc this does nothing.
    """

    def __init__(self, slack: int = 96 << 20):
        self.slack, self.base = slack, None
        try:
            import ctypes

            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
            self._statm = open("/proc/self/statm")  # noqa: SIM115 -- read again at every check, closed with self
        except (OSError, AttributeError):
            self._trim = None

    def _resident(self) -> int:
        self._statm.seek(0)
        return int(self._statm.read().split()[1]) * 4096

    def check(self) -> None:
        if self._trim is None:
            return
        now = self._resident()
        if self.base is None:
            self.base = now
        elif now > self.base + self.slack:
            self._trim(0)
            self.base = self._resident()

    def __del__(self):
        if self._trim is not None:
            self._statm.close()
