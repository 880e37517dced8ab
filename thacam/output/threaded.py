"""Another sink's work on its own thread: encoding and file writing off the render loop.

    SinkThread(sink, depth=N)            offline: a bounded queue; ``send`` blocks when it is
                                         full, so nothing is dropped and memory stays bounded
    SinkThread(sink, newest_wins=True)   live: one slot; a frame the writer has not taken yet
                                         is replaced by the newer one (never a growing backlog)

The wrapped sink is opened on the caller's thread (an output that cannot open fails where it was
asked for), then fed and closed on the worker, in order. An error there stops the worker and is
raised again from the next ``send`` or from ``close`` (the wrapped sink aborted: no half-written
file); ``abort`` drops whatever is still queued and aborts the wrapped sink. Not a registered
output: the composition root (or an offline command) wraps the sinks it builds. Must not import
torch.
"""

from __future__ import annotations

import collections
import logging
import threading

import numpy as np

from . import FrameSink

__all__ = ["SinkThread"]

log = logging.getLogger(__name__)

_CLOSE = object()


class SinkThread(FrameSink):
    """Runs ``sink`` on a thread of its own behind a bounded queue (see the module's doc)."""

    def __init__(self, sink: FrameSink, depth: int = 8, newest_wins: bool = False):
        self.sink = sink
        self.depth = 1 if newest_wins else max(1, int(depth))
        self.newest_wins = newest_wins
        self.dropped = 0
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._aborted = False
        self._thread: threading.Thread | None = None

    @property
    def description(self) -> str:
        return self.sink.description

    def open(self) -> "SinkThread":
        self.sink.open()
        self._thread = threading.Thread(target=self._work, daemon=True,
                                        name=f"thacam-sink {self.description}")
        self._thread.start()
        return self

    def send(self, rgba: np.ndarray, t_capture_ms: float = 0.0) -> None:
        if self._thread is None:
            self.open()
        with self._cond:
            while (len(self._queue) >= self.depth and not self.newest_wins
                   and self._error is None):
                self._cond.wait()
            self._raise_error()
            if len(self._queue) >= self.depth:       # newest wins: the stale frame goes
                self._queue.popleft()
                self.dropped += 1
            # The caller may reuse its buffer once send returns (the live loop does not, the
            # offline loop hands over whole batches), so frames are queued as given.
            self._queue.append((rgba, t_capture_ms))
            self._cond.notify_all()

    def close(self) -> None:
        """Wait until every queued frame is written, then close the wrapped sink."""
        if self._thread is None:
            self.sink.close()
            return
        with self._cond:
            self._queue.append(_CLOSE)
            self._cond.notify_all()
        self._thread.join()
        self._thread = None
        if self._error is not None:
            self.sink.abort()
        self._raise_error()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._queue.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sink.abort()

    def _raise_error(self) -> None:
        if self._error is not None:      # kept: a dead worker must not be fed again
            raise self._error

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._aborted:
                    self._cond.wait()
                if self._aborted:
                    return
                item = self._queue.popleft()
                self._cond.notify_all()          # a blocked send may go on
            try:
                if item is _CLOSE:
                    self.sink.close()
                    return
                self.sink.send(*item)
            except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
                with self._cond:
                    self._error = exc
                    self._queue.clear()
                    self._cond.notify_all()
                return
