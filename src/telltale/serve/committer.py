"""The receiver's write side: a byte-bounded queue and one committer thread that owns the store.

Requests wait in the queue. A decoder thread decodes each as it arrives and adds it to the next
group; the committer thread takes the whole group when it is free and commits it in one
transaction with `Store.commit_parts`, each request its own batch. Only then are the requests'
futures resolved, so an acknowledgement always means "committed". Under load a group is
everything that arrived while the previous commit ran (a commit's fixed cost, ~20 ms, is paid
once for all of them); alone, a request is committed at once (no timer).

Memory is bounded by `ByteBudget`: request bodies reserve their bytes while being read and keep
them until committed, and a request that cannot reserve is refused (429 / UNAVAILABLE).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import duckdb

from telltale.model import QuarantineReason
from telltale.normalize.staging import Decoded, Reject
from telltale.serve.decode import DecodedGroup, Part, PartResult, decode_group, merge_groups
from telltale.serve.stats import ReceiverStats
from telltale.store import BatchSource, Store

log = logging.getLogger("telltale.serve")


# How long the committer waits for the rest of a group (see `Committer._next_group`).
# bench_serve.py, 6 clients: no wait 26.5 k spans/s (groups alternated 1 and 5), 8 ms 29.6 k,
# 15 ms 34.5 k, 25 ms 34.8 k (the answered clients' next requests still arriving and decoding).
LINGER_S = 0.015


class ByteBudget:
    """Bytes that queued and in-flight request bodies may hold, all together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def try_acquire(self, n: int) -> bool:
        with self._lock:
            if self._used + n > self.limit:
                return False
            self._used += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self._used = max(0, self._used - n)

    @property
    def used(self) -> int:
        return self._used


@dataclass
class Job:
    """Something for the committer: an OTLP request (`part`) or any other store task (`task`)."""

    reserved: int
    part: Part | None = None
    task: Callable[[Store], Any] | None = None
    future: Future[Any] = field(default_factory=Future)


class Committer:
    """Owns the store; runs on its own thread until `stop()` has drained the queue."""

    def __init__(self, store: Store, budget: ByteBudget, stats: ReceiverStats,
                 max_group: int = 256, max_group_bytes: int = 64 << 20) -> None:
        self.store = store
        self.budget = budget
        self.stats = stats
        self.max_group = max_group
        self.max_group_bytes = max_group_bytes
        self._queue: queue.Queue[Job | None] = queue.Queue()
        # Decoded requests waiting for the committer, and whether the decoder has finished.
        self._ready: list[_Ready] = []
        self._ready_bytes = 0
        self._decoder_done = False
        self._last_group = 0  # requests in the last group committed
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="telltale-decoder", daemon=True)
        self._committer = threading.Thread(target=self._commit_loop, name="telltale-committer",
                                           daemon=True)
        self._accepting = True
        self.healthy = True

    def start(self) -> None:
        self._thread.start()
        self._committer.start()

    def submit(self, job: Job) -> Future[Any]:
        if not self._accepting:
            self.budget.release(job.reserved)
            job.future.set_exception(ShuttingDownError("the receiver is shutting down"))
            return job.future
        self._queue.put(job)
        self.stats.queue_depth.set(self._queue.qsize())
        return job.future

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new work, commit everything queued, then end the thread."""
        self._accepting = False
        self._queue.put(None)
        self._thread.join(timeout)
        self._committer.join(timeout)

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._ready)

    def _run(self) -> None:
        """Decoder loop: decode requests as they arrive and add them to the next group.

        Decoding (ptars and upb hold the GIL) overlaps the running commit (DuckDB releases it),
        so the two stages use both cores. The decoder waits while the next group is full."""
        while True:
            job = self._queue.get()
            if job is None:
                with self._cond:
                    self._decoder_done = True
                    self._cond.notify_all()
                return
            self.stats.queue_depth.set(self._queue.qsize())
            started = time.perf_counter()
            decoded: DecodedGroup | None = None
            if job.part is not None:
                try:
                    decoded = decode_group([job.part])
                except Exception as exc:  # a decoder bug must not kill the receiver
                    log.exception("decoding a request failed")
                    self._finish([job], exc)
                    continue
            with self._cond:
                while (self._ready and (len(self._ready) >= self.max_group
                                        or self._ready_bytes >= self.max_group_bytes)):
                    self._cond.wait()
                self._ready.append(_Ready(job, decoded, started))
                self._ready_bytes += job.reserved
                self._cond.notify_all()

    def _next_group(self) -> list[_Ready] | None:
        """Everything decoded so far (None once the decoder has finished and all is taken).

        Under load, the clients answered by the last commit send their next requests a moment
        after it: waiting up to `LINGER_S` for them (besides those already waiting) takes them
        into this commit instead of leaving them for a commit of their own (each commit has a
        fixed cost). A request arriving alone is committed at once."""
        with self._cond:
            # The clients just answered, plus those that sent while the last commit ran.
            target = min(self._last_group + len(self._ready), self.max_group)
            while not self._ready and not self._decoder_done:
                self._cond.wait()
            deadline = time.monotonic() + LINGER_S
            while (len(self._ready) < target and not self._decoder_done
                   and self._ready_bytes < self.max_group_bytes
                   and (left := deadline - time.monotonic()) > 0):
                self._cond.wait(left)
            group, self._ready, self._ready_bytes = self._ready, [], 0
            self._last_group = len(group)
            self._cond.notify_all()
        return group or None

    def _commit_loop(self) -> None:
        while (group := self._next_group()) is not None:
            parts = [r for r in group if r.job.part is not None and r.decoded is not None]
            tasks = [r.job for r in group if r.job.task is not None]
            try:
                if parts:
                    self._commit_parts([r.job for r in parts],
                                       merge_groups([r.decoded for r in parts if r.decoded]),
                                       min(r.started for r in parts))
                for job in tasks:
                    self._run_task(job)
            finally:
                for r in group:
                    self.budget.release(r.job.reserved)
                self.stats.queue_bytes.set(self.budget.used)

    def _finish(self, jobs: list[Job], exc: Exception) -> None:
        for job in jobs:
            job.future.set_exception(exc)
            self.budget.release(job.reserved)

    def _commit_parts(self, jobs: list[Job], decoded: DecodedGroup, started: float) -> None:
        batch, sources, undecodable = decoded
        try:
            reports = self.store.commit_parts(batch, sources)
        except STORE_FAILURES as exc:  # the store itself failed: nothing committed, retry later
            log.exception("group commit failed")
            self.healthy = False
            for job in jobs:
                job.future.set_exception(exc)
            return
        except Exception as exc:
            # Something in the data made the commit fail. One bad request must not cost the
            # others their commit: retry them one by one, and refuse only the culprit.
            if len(jobs) > 1:
                for job in jobs:
                    assert job.part is not None
                    self._commit_parts([job], decode_group([job.part]), started)
            else:
                self._refuse(jobs[0], exc)
            return
        self.healthy = True
        self.stats.commit_seconds.observe(time.perf_counter() - started)
        for i, (job, report) in enumerate(zip(jobs, reports, strict=True)):
            assert job.part is not None
            self.stats.count_report(job.part.signal, report)
            job.future.set_result(PartResult(report, undecodable.get(i)))

    def _refuse(self, job: Job, exc: Exception) -> None:
        """A request whose records cannot be stored: keep its body in quarantine (nothing is
        lost silently) and answer 400, since retrying it cannot help."""
        assert job.part is not None
        reason = f"cannot store this request: {exc}".splitlines()[0][:500]
        log.warning("refused a request: %s", reason)
        raw = job.part.body.hex() if job.part.content_type != "application/json" else \
            job.part.body.decode(errors="replace")
        decoded = Decoded(rejects=[Reject(job.part.signal, "request", QuarantineReason.BAD_SHAPE,
                                          raw[:65536], reason)])
        source = job.part.source
        # Its own idempotency key: the same body sent again must be refused again, not
        # answered "already stored".
        refused = BatchSource(source.source, source.fmt, f"{source.content_hash}:refused")
        try:
            (report,) = self.store.commit_parts(decoded, [refused])
        except Exception as again:
            job.future.set_exception(again)
            return
        self.stats.count_report(job.part.signal, report)
        job.future.set_result(PartResult(report, reason))

    def _run_task(self, job: Job) -> None:
        assert job.task is not None
        try:
            job.future.set_result(job.task(self.store))
        except Exception as exc:
            job.future.set_exception(exc)


# Failures of the store itself (disk, memory), as opposed to data it cannot take: these are
# answered "retry later", the others isolate and refuse the offending request.
STORE_FAILURES = (duckdb.IOException, duckdb.OutOfMemoryException, OSError, MemoryError)


@dataclass
class _Ready:
    """A request decoded (or a task) waiting for the committer."""

    job: Job
    decoded: DecodedGroup | None
    started: float


class ShuttingDownError(RuntimeError):
    """Work submitted after shutdown began."""
