"""From the hot path's rows to the spool: encoding and writing, off the caller's thread.

`record` and `span` only append a tuple to `pending` (a deque: `append` is atomic under the GIL,
so they take no lock) and compare its length with `kick_at`. Past it, `kick` wakes the writer
thread, which encodes the rows (lines.py) and writes them (spool.py). Only this lock's holder
takes rows, from the front, so rows keep their order and one appended meanwhile is never lost.

Why the encoding is chunked, with a short sleep between chunks: a thread waiting for the GIL
waits up to the switch interval (5 ms) before it asks the holder to let go. Releasing it every
chunk (about 50 µs of work) bounds what a `record` call can wait for this thread to a chunk.

Backpressure (nothing is ever dropped): a caller busy enough to starve the writer thread of the
GIL helps it, encoding one chunk itself whenever `HELP_AFTER` chunks are waiting; past
`BLOCK_AFTER` chunks it waits for the lock to do so, and when the disk is the bottleneck
(`BLOCK_AFTER` chunks encoded but not written) it writes them itself. With `flush_lines=1` every
call writes its line before returning (the crash-safe mode).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import repeat

from telltale.recorder.lines import Row, encode
from telltale.recorder.spool import SpoolWriter

CHUNK = 256  # rows encoded per GIL hold (about 40-80 µs)
HELP_AFTER = 4  # chunks pending before a caller encodes one itself
BLOCK_AFTER = 64  # chunks pending (or encoded, unwritten) before a caller waits to do so
WRITE_AFTER = 16  # chunks encoded by the writer thread before it writes them
# A pause between chunks, so that a caller waiting for the GIL surely takes it (a zero sleep
# releases the GIL but this thread usually takes it straight back, and the caller waits 5 ms).
YIELD_SECONDS = 20e-6


class Flusher:
    """One per process: the rows the API appended, and the thread that writes them."""

    def __init__(self, pending: deque[Row], configure_default: Callable[[], None]) -> None:
        self.pending = pending
        self.encoded: list[bytes] = []  # chunks of lines, encoded in order, not yet written
        self.encoded_lines = 0
        self.writer: SpoolWriter | None = None
        self.kick_at = 1  # the first row configures and starts the thread
        self.flush_lines = 256
        self.flush_seconds = 1.0
        self.sync = False
        self.lock = threading.Lock()  # who encodes and writes: one at a time, in order
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self._configure_default = configure_default

    def use(self, writer: SpoolWriter, flush_lines: int, flush_seconds: float) -> None:
        """Write to `writer` from now on; what is pending goes to the previous one, finalised."""
        with self.lock:
            old = self.writer
            if old is not None:
                self._drain_locked()
                old.finish(finalise=True)
            self.writer = writer
            self.flush_lines, self.flush_seconds = flush_lines, flush_seconds
            self.sync = flush_lines <= 1 or flush_seconds <= 0
            self.kick_at = 1 if self.sync else flush_lines
        if not self.sync:
            self._start()
        self.wake.set()  # a running thread takes the new settings now

    def kick(self) -> None:
        """The slow path of an API call (about one call in `flush_lines`). Never raises."""
        try:
            if self.writer is None:
                self._configure_default()
            if self.sync or (self.thread is None and not self._start()):
                self.flush()
                return
            backlog = len(self.pending)
            # The writer thread is starved of the GIL: encode a chunk here (wait for the lock
            # only when far behind; an encoder busy with the rows already helps).
            if backlog >= HELP_AFTER * CHUNK and self.lock.acquire(blocking=backlog >= BLOCK_AFTER * CHUNK):
                try:
                    self._encode_chunk()
                    if self.encoded_lines >= BLOCK_AFTER * CHUNK:  # the disk is slow: wait for it
                        self._write_locked()
                finally:
                    self.lock.release()
            self.kick_at = len(self.pending) + self.flush_lines
            self.wake.set()
        except Exception:
            self.count("internal_error")

    def flush(self, finalise: bool = False, report: bool = False) -> None:
        """Encode and write everything pending now, on the calling thread."""
        with self.lock:
            self._drain_locked()
            if self.writer is not None and (finalise or report):
                self.writer.finish(finalise=finalise)

    def count(self, reason: str, n: int = 1) -> None:
        try:
            if self.writer is not None:
                self.writer.count(reason, n)
        except Exception:
            pass

    def reset_after_fork(self) -> None:
        """In a forked child: the rows pending are the parent's to write; no thread runs here."""
        self.pending.clear()
        self.encoded, self.encoded_lines = [], 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread = None
        self.kick_at = 1
        if self.writer is not None:
            self.writer.reset_after_fork()

    def _start(self) -> bool:
        if self.thread is not None:
            return True
        try:
            thread = threading.Thread(target=self._run, name="telltale-recorder", daemon=True)
            thread.start()
        except Exception:  # e.g. at interpreter shutdown: write synchronously instead
            self.sync, self.kick_at = True, 1
            return False
        self.thread = thread
        return True

    def _run(self) -> None:
        while True:
            self.wake.wait(None if self.sync else self.flush_seconds)  # sync: callers write
            self.wake.clear()
            self.kick_at = 1 if self.sync else self.flush_lines
            try:
                while self.pending:
                    with self.lock:
                        self._encode_chunk()
                        if self.encoded_lines >= WRITE_AFTER * CHUNK:
                            self._write_locked()
                    time.sleep(YIELD_SECONDS)  # a caller waiting for the GIL gets it now
                with self.lock:
                    self._write_locked()
            except Exception:
                self.count("internal_error")

    def _drain_locked(self) -> None:
        while self.pending:
            self._encode_chunk()
        self._write_locked()

    def _encode_chunk(self) -> None:
        take = self.pending.popleft
        rows = [take() for _ in repeat(None, min(CHUNK, len(self.pending)))]
        counts: dict[str, int] = {}
        data, lines = encode(rows, counts)
        if lines:
            self.encoded.append(data)
            self.encoded_lines += lines
        for reason, n in counts.items():
            self.count(reason, n)

    def _write_locked(self) -> None:
        if not self.encoded_lines or self.writer is None:
            return
        chunks, lines = self.encoded, self.encoded_lines
        self.encoded, self.encoded_lines = [], 0
        self.writer.write(b"".join(chunks), lines)
