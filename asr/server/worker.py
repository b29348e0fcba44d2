"""The one thread that runs the model, and the counts that admit work to it.

Neither `Transcriber.transcribe` nor a stream's `accept` and `finish` may run in two threads at once: the
beam-search decoder objects are shared by every call and keep state between steps. So all model work of
the server, file transcriptions and every stream's steps alike, goes through one `ModelWorker`: a
one-thread executor whose queue interleaves them in the order they come. The event loop only awaits it
and stays free to read uploads, answer /health and take stream messages meanwhile; the model's own
threads (`--threads`) do the parallel arithmetic inside each call.

What may wait in that queue is bounded by `Slots`: at most `--max-requests` transcription requests and
`--max-streams` streams are admitted at a time (each stream waits for one step at a time), and the one
beyond is answered 503 at once rather than queued without end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class ModelWorker:
    """Runs functions on one thread, in the order they are submitted; `run` awaits one from the event loop."""

    def __init__(self):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-model")

    async def run(self, fn: Callable[..., T], *args) -> T:
        """`fn(*args)` on the model thread. An exception is raised here, and the thread goes on with the next.
        Cancelling the awaiting task drops a call still waiting in the queue; one already running finishes."""
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    def close(self) -> None:
        """Drop the calls still queued; the running one finishes in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class Slots:
    """How many of something are in progress, against a limit. Only the event loop's thread touches it,
    so a plain counter is enough: `take` and `release` never interleave."""

    def __init__(self, limit: int):
        self.limit, self.active = limit, 0

    def take(self) -> bool:
        """Take a slot -> whether there was one free."""
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1
