"""telltale.recorder: record events and spans from any Python program, without a server.

    from telltale import recorder
    recorder.configure(spool="./telltale-spool", max_records=1000)   # optional
    wid = recorder.record("agent.spawn", model="claude-x", role="worker")
    with recorder.span("build", target="all"):
        ...                                   # an exception marks the span as an error
    recorder.update(wid, outcome="success", tokens=1200)

Lines go to the spool (spool.py, in the format of lines.py) that `telltale ingest SPOOL_DIR`
reads without options. A call only appends a tuple to a list; a thread encodes and writes them
(flusher.py). Nothing here raises into the caller: the recorder's own failures (disk full,
permission denied, unserialisable values) are counted in the spool's status file; the caller's
exceptions inside `span` propagate unchanged.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import itertools
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from telltale.recorder.flusher import Flusher
from telltale.recorder.lines import MARKER, Ctx, Row, ctx_with_ids, full_id, header, status_of
from telltale.recorder.spool import SpoolConfig, SpoolStatus, SpoolWriter, read_status

ENV_SPOOL = "TELLTALE_SPOOL"  # the spool directory when configure() is not given one
DEFAULT_SPOOL = "telltale-spool"

__all__ = ["ENV_SPOOL", "MARKER", "Span", "SpoolStatus", "close", "configure", "flush", "read_status",
           "record", "span", "update"]

# Where the innermost open span of this thread / task is (a ctx of lines.py; 0: none).
_current: contextvars.ContextVar[Ctx] = contextvars.ContextVar("telltale_recorder_span", default=0)
_pending: deque[Row] = deque()  # rows not yet encoded: appended here, taken by the flusher only
_time_ns = time.time_ns
_BASE = time.time_ns()  # lines hold times relative to this (their segment's header has it)
_next_n = itertools.count(1).__next__  # the low half of ids (thread-safe: one C call)
_prefix = 0  # the high half of ids: random per process, top bit set (so always 16 digits)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _new_prefix() -> None:
    global _prefix
    _prefix = (int.from_bytes(os.urandom(4), "big") | 0x8000_0000) << 32


def configure(spool: str | os.PathLike[str] | None = None, *, service: str | None = None,
              max_records: int = 100_000, max_bytes: int = 64 << 20, keep: int | None = None,
              flush_lines: int = 256, flush_seconds: float = 1.0) -> None:
    """Where and how to write. Safe to call again (what was recorded so far is written to the
    previous spool, whose open segment is finalised).

    spool: directory (default $TELLTALE_SPOOL, else ./telltale-spool); service: service.name of
    the spans (default: the program's name); max_records / max_bytes: rotate a segment after
    this many lines / bytes; keep: finalised segments kept (oldest deleted), None keeps all;
    flush_lines / flush_seconds: write after this many lines or this long; flush_lines=1 (or
    flush_seconds=0) writes every line before the call returns."""
    try:
        path = Path(spool if spool is not None else os.environ.get(ENV_SPOOL) or DEFAULT_SPOOL)
        name = service or Path(getattr(sys, "argv", [""])[0] or "python").stem or "python"

        def segment_header() -> bytes:  # read when a segment opens: a forked child has its own
            return header(name, _prefix, _BASE, socket.gethostname(), os.getpid())

        writer = SpoolWriter(SpoolConfig(path=path, max_records=max(1, max_records),
                                         max_bytes=max(1, max_bytes), keep=keep,
                                         flush_lines=max(1, flush_lines),
                                         flush_seconds=flush_seconds), header=segment_header)
        _flusher.use(writer, max(1, flush_lines), flush_seconds)
    except Exception:
        pass


def record(name: str, /, **attrs: Any) -> str:
    """An event (an instant span) now; returns its id for `update`. Never raises."""
    try:  # the hot path: one tuple appended, everything else is the flusher's (or update's)
        n = _next_n()
        if "outcome" in attrs:
            _pending.append(("e", n, _current.get(), name, _time_ns() - _BASE, attrs,
                             status_of(attrs["outcome"])))
        else:
            _pending.append(("e", n, _current.get(), name, _time_ns() - _BASE, attrs))
        if len(_pending) >= _flusher.kick_at:
            _flusher.kick()
        return hex(_prefix | n)[2:]  # full_id, inlined
    except Exception:
        _flusher.count("internal_error")
        return ""


def update(span_id: str, /, outcome: str | None = None, **attrs: Any) -> None:
    """Add what became known later to an event or span: its outcome (which also ends an event:
    the time between `record` and this update is its duration) and more attributes."""
    try:
        when = _time_ns() - _BASE
        span_id = span_id if isinstance(span_id, str) else str(span_id)
        _pending.append(("u", span_id, when, attrs) if outcome is None else
                        ("u", span_id, when, attrs, outcome, status_of(outcome)))
        if len(_pending) >= _flusher.kick_at:
            _flusher.kick()
    except Exception:
        _flusher.count("internal_error")


class Span:
    """A timed span around a block (`span(name, **attrs)`): set attributes or the outcome before
    the block ends; an exception sets error status (and error.type) and propagates as usual."""

    __slots__ = ("_n", "_parent", "_prefix", "_start", "_token", "attrs", "name", "outcome")

    def __init__(self, name: str, /, **attrs: Any) -> None:
        self.name = name
        self.attrs = attrs
        self.outcome: str | None = None
        self._n = 0

    @property
    def id(self) -> str:
        return full_id(self._prefix, self._n) if self._n else ""

    def set(self, **attrs: Any) -> None:
        self.attrs.update(attrs)

    def __call__(self, func: Callable[_P, _R]) -> Callable[_P, _R]:
        """`@recorder.span("name", **attrs)` on a function: a span around each of its calls."""
        name, attrs = self.name, self.attrs

        @functools.wraps(func)
        def spanned(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with Span(name, **attrs):
                return func(*args, **kwargs)

        return spanned

    def __enter__(self) -> Span:
        try:
            n = self._n = _next_n()
            parent = self._parent = _current.get()
            self._prefix = _prefix
            # Its children's ctx: under a root, the root's id; deeper, (trace, this span).
            self._token = _current.set(n if parent == 0 else
                                       (parent if parent.__class__ is int else parent[0], n))
        except Exception:
            _flusher.count("internal_error")
        self._start = _time_ns()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        end = _time_ns()
        try:
            n: int | str = self._n
            parent = self._parent
            if self._prefix != _prefix:  # opened before this process forked: whole ids
                n, parent = self.id, ctx_with_ids(parent, self._prefix)
                _current.set(parent)
            else:
                _current.reset(self._token)
            start = self._start
            if exc is not None:
                row: Row = ("s", n, parent, self.name, start - _BASE, end - start, self.attrs,
                            "error", None, type(exc).__qualname__, str(exc)[:500])
            elif self.outcome is None:
                row = ("s", n, parent, self.name, start - _BASE, end - start, self.attrs, "ok")
            else:
                row = ("s", n, parent, self.name, start - _BASE, end - start, self.attrs,
                       status_of(self.outcome), self.outcome)
            _pending.append(row)
            if len(_pending) >= _flusher.kick_at:
                _flusher.kick()
        except Exception:
            _flusher.count("internal_error")


span = Span  # `with recorder.span("build", target="all") as s:` (a class: no generator to drive)


def flush() -> None:
    """Write what was recorded now (also done by a thread every flush_lines / flush_seconds and
    at exit), and the status file's counters."""
    try:
        _flusher.flush(report=True)
    except Exception:
        _flusher.count("internal_error")


def close() -> None:
    """Write what was recorded and finalise the open segment (done at exit automatically)."""
    try:
        _flusher.flush(finalise=True)
    except Exception:
        _flusher.count("internal_error")


def _after_fork() -> None:
    parent_prefix = _prefix
    _new_prefix()
    current = _current.get()
    if current != 0:  # this thread's open spans are the parent process's: whole ids from here
        _current.set(ctx_with_ids(current, parent_prefix))
    _flusher.reset_after_fork()
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        # A multiprocessing child leaves by os._exit, so atexit never runs; its finalisers do.
        # They are cleared when the child starts, then its after-fork hooks run: register there.
        mp_util.register_after_fork(_flusher, _register_finaliser)


def _register_finaliser(_: object) -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, close, exitpriority=10)


_flusher = Flusher(_pending, configure)
_new_prefix()
atexit.register(close)
os.register_at_fork(after_in_child=_after_fork)
