"""`serve --spool DIR`: finished recorder segments are ingested as they appear.

The recorder finalises a segment by renaming it to `seg-*.jsonl` (its hidden `.part` file is
still being written), so a visible segment is complete. Each one is handed to the committer as
an ordinary ingest (the same pipeline, serialized with the receiver's commits); content
hashing makes a segment seen twice (a restart) stored once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from telltale.ingest import SourceResult, ingest_bytes
from telltale.serve.committer import Committer, Job
from telltale.store import Store

log = logging.getLogger("telltale.serve")
PATTERN = "seg-*.jsonl"


class SpoolWatcher:
    def __init__(self, spool: Path, committer: Committer, interval_s: float = 2.0) -> None:
        self.spool = spool
        self.committer = committer
        self.interval_s = interval_s
        self._seen: set[tuple[str, int, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telltale-spool", daemon=True)
        self.ingested = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def scan(self) -> int:
        """Submit every new finished segment; returns how many were stored (waits for them)."""
        stored = 0
        for path in sorted(self.spool.glob(PATTERN)):
            try:
                st = path.stat()
                key = (path.name, st.st_size, st.st_mtime_ns)
                if key in self._seen:
                    continue
                data = path.read_bytes()
            except OSError as exc:  # rotated away meanwhile, unreadable: try next time
                log.warning("spool segment %s: %s", path, exc)
                continue
            if not self.committer.budget.try_acquire(len(data)):
                return stored  # the receiver is busy: the rest waits for the next scan
            job = Job(reserved=len(data), task=_ingest(data, str(path)))
            result: SourceResult = self.committer.submit(job).result()
            if result.error is None:
                self._seen.add(key)
                stored += 1
        self.ingested += stored
        return stored

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.scan()
            except Exception:  # a failed scan must not end the watching
                log.exception("spool scan failed")


def _ingest(data: bytes, source: str) -> Callable[[Store], SourceResult]:
    def task(store: Store) -> SourceResult:
        return ingest_bytes(store, data, source=source)
    return task
