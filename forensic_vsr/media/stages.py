"""A pipeline stage on its own thread: decode, hashing, encoding and the round-trip check overlap."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable


class PipelineStage:
    """Runs `work(*item)` for each submitted item on a worker thread behind a bounded queue.

    PyAV releases the GIL while decoding, encoding and rescaling, so stages overlap on several
    cores; the queue bound keeps memory constant. A worker error is raised in the caller at the
    next `submit` or at `close`."""

    _STOP = object()

    def __init__(self, work: Callable[..., None], name: str, depth: int = 4) -> None:
        self._work = work
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"fvsr-{name}", daemon=True)
        self._closed = False
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is None:
                try:
                    self._work(*item)  # type: ignore[misc]
                except BaseException as exc:
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, *item: object) -> None:
        self._raise()
        self._queue.put(item)

    def close(self) -> None:
        """Finish queued work and join; raise the worker's error unless one is already propagating."""
        if not self._closed:
            self._closed = True
            self._queue.put(self._STOP)
        self._thread.join()  # always: a signal may have interrupted an earlier join
        if sys.exc_info()[0] is None:
            self._raise()
