"""telltale.recorder: record events and spans from any Python program, without a server.

    from telltale import recorder
    recorder.configure(spool="./telltale-spool", max_records=1000)   # optional
    wid = recorder.record("agent.spawn", model="claude-x", role="worker")
    with recorder.span("build", target="all"):
        ...                                   # an exception marks the span as an error
    recorder.update(wid, outcome="success", tokens=1200)

Lines go to the spool (see spool.py) that `telltale ingest SPOOL_DIR` reads without options.
Nothing here raises into the caller: the recorder's own failures (disk full, permission denied,
unserialisable values) are counted in the spool's status file (status.py); the caller's
exceptions inside `span` propagate unchanged.
"""

from __future__ import annotations

import atexit
import contextvars
import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from telltale.recorder.spool import SpoolConfig, SpoolStatus, SpoolWriter, read_status

ENV_SPOOL = "TELLTALE_SPOOL"  # the spool directory when configure() is not given one
DEFAULT_SPOOL = "telltale-spool"
MARKER = "telltale.recorder"  # every line carries {"telltale.recorder": 1}: how ingest knows it
_TRACE_PAD = "0" * 16  # a root's trace id: its span id, padded to 32 hex digits
_DUMP_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
ERROR_OUTCOMES = frozenset({"error", "failure", "failed", "fail", "timeout", "crash", "aborted"})

__all__ = ["ENV_SPOOL", "MARKER", "SpoolStatus", "close", "configure", "flush", "read_status", "record",
           "span", "update"]

# (trace id, span id) of the innermost open span in this thread / task: children nest under it.
_current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "telltale_recorder_span", default=None)


class _State:
    writer: SpoolWriter | None = None
    service: str = ""
    prefix_int: int = 0  # per-process random high half of span ids; the counter is the low half
    counter: Iterator[int] = itertools.count(1)
    lock = threading.Lock()


def _new_prefix() -> None:
    _State.prefix_int = int.from_bytes(os.urandom(4), "big") << 32
    _State.counter = itertools.count(1)


def configure(spool: str | os.PathLike[str] | None = None, *, service: str | None = None,
              max_records: int = 100_000, max_bytes: int = 64 << 20, keep: int | None = None,
              flush_lines: int = 256, flush_seconds: float = 1.0) -> None:
    """Where and how to write. Safe to call again (the previous spool is flushed and finalised).

    spool: directory (default $TELLTALE_SPOOL, else ./telltale-spool); service: service.name of
    the spans (default: the program's name); max_records / max_bytes: rotate a segment after
    this many lines / bytes; keep: finalised segments kept (oldest deleted), None keeps all;
    flush_lines / flush_seconds: write after this many buffered lines or this long."""
    try:
        with _State.lock:
            if _State.writer is not None:
                _State.writer.flush(finalise=True)
            path = Path(spool if spool is not None else os.environ.get(ENV_SPOOL) or DEFAULT_SPOOL)
            _State.writer = SpoolWriter(SpoolConfig(
                path=path, max_records=max(1, max_records), max_bytes=max(1, max_bytes),
                keep=keep, flush_lines=max(1, flush_lines), flush_seconds=flush_seconds))
            _State.service = service or Path(getattr(sys, "argv", [""])[0] or "python").stem or "python"
    except Exception:
        pass


def _writer() -> SpoolWriter:
    writer = _State.writer
    if writer is None:
        configure()
        writer = _State.writer
        assert writer is not None
    return writer


def _new_id() -> str:
    return format(_State.prefix_int | next(_State.counter), "016x")


def _default(value: object) -> object:
    """orjson's fallback for values it cannot encode: their text (counted as coerced)."""
    w = _State.writer
    if w is not None:
        w.count("coerced_values")
    return repr(value)[:1000]


def _emit(line: dict[str, Any]) -> None:
    writer = _writer()
    try:
        data = orjson.dumps(line, default=_default, option=_DUMP_OPTIONS)
    except Exception:
        writer.count("unserialisable")
        try:
            line["attrs"] = {str(k): repr(v)[:1000] for k, v in line.get("attrs", {}).items()}
            data = orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        except Exception:
            writer.count("dropped_unserialisable")
            return
    writer.append(data)


def _line(kind: str, span_id: str, name: str, start: int, attrs: dict[str, Any],
          parent: tuple[str, str] | None) -> dict[str, Any]:
    trace, parent_id = (parent[0], parent[1]) if parent else (_TRACE_PAD + span_id, "")
    return {MARKER: 1, "kind": kind, "id": span_id, "trace": trace, "parent": parent_id,
            "name": name, "service": _State.service, "start": start, "attrs": attrs}


def record(name: str, /, **attrs: Any) -> str:
    """An event (an instant span) now; returns its id for `update`. Never raises."""
    try:  # the hot path: inlined on purpose (each helper call costs a tenth of a µs)
        span_id = format(_State.prefix_int | next(_State.counter), "016x")
        parent = _current.get()
        line = {MARKER: 1, "kind": "event", "id": span_id,
                "trace": parent[0] if parent else _TRACE_PAD + span_id,
                "parent": parent[1] if parent else "", "name": name, "service": _State.service,
                "start": time.time_ns(), "attrs": attrs}
        if "outcome" in attrs:
            line["status"] = "error" if str(attrs["outcome"]).lower() in ERROR_OUTCOMES else "ok"
        writer = _State.writer or _writer()
        try:
            data = orjson.dumps(line, option=_DUMP_OPTIONS)
        except TypeError:  # a value orjson cannot encode natively: the careful path
            _emit(line)
            return span_id
        writer.append(data)
        return span_id
    except Exception:
        _count_quietly("internal_error")
        return ""


def update(span_id: str, /, outcome: str | None = None, **attrs: Any) -> None:
    """Add what became known later to an event or span: its outcome (which also ends an event:
    the time between `record` and this update is its duration) and more attributes."""
    try:
        line: dict[str, Any] = {MARKER: 1, "kind": "update", "id": span_id, "time": time.time_ns(),
                                "attrs": attrs}
        if outcome is not None:
            line["outcome"] = outcome
            line["status"] = "error" if str(outcome).lower() in ERROR_OUTCOMES else "ok"
        _emit(line)
    except Exception:
        _count_quietly("internal_error")


class Span:
    """The handle `span` yields: set attributes or the outcome before the block ends."""

    __slots__ = ("attrs", "id", "outcome")

    def __init__(self, span_id: str, attrs: dict[str, Any]) -> None:
        self.id = span_id
        self.attrs = attrs
        self.outcome: str | None = None

    def set(self, **attrs: Any) -> None:
        self.attrs.update(attrs)


@contextmanager
def span(name: str, /, **attrs: Any) -> Iterator[Span]:
    """A timed span around a block; an exception sets error status (and error.type) and then
    propagates to the caller as usual."""
    handle = Span("", attrs)
    token: contextvars.Token[tuple[str, str] | None] | None = None
    start = time.time_ns()
    parent = None
    try:
        handle.id = _new_id()
        parent = _current.get()
        trace = parent[0] if parent else _TRACE_PAD + handle.id
        token = _current.set((trace, handle.id))
    except Exception:
        _count_quietly("internal_error")
    failure: BaseException | None = None
    try:
        yield handle
    except BaseException as exc:
        failure = exc
        raise
    finally:
        _finish(handle, name, start, parent, failure, token)


def _finish(handle: Span, name: str, start: int, parent: tuple[str, str] | None,
            failure: BaseException | None,
            token: contextvars.Token[tuple[str, str] | None] | None) -> None:
    try:
        if token is not None:
            _current.reset(token)
        line = _line("span", handle.id, name, start, handle.attrs, parent)
        line["end"] = time.time_ns()
        if failure is not None:
            line["status"] = "error"
            line["error.type"] = type(failure).__qualname__
            line["message"] = str(failure)[:500]
        elif handle.outcome is not None:
            line["outcome"] = handle.outcome
            line["status"] = "error" if handle.outcome.lower() in ERROR_OUTCOMES else "ok"
        else:
            line["status"] = "ok"
        _emit(line)
    except Exception:
        _count_quietly("internal_error")


def flush() -> None:
    """Write buffered lines now (they are also written at exit and every flush_seconds)."""
    try:
        if _State.writer is not None:
            _State.writer.flush()
    except Exception:
        _count_quietly("internal_error")


def _count_quietly(reason: str) -> None:
    try:
        if _State.writer is not None:
            _State.writer.count(reason)
    except Exception:
        pass


def _at_exit() -> None:
    try:
        if _State.writer is not None:
            _State.writer.flush(finalise=True)
    except Exception:
        pass


def close() -> None:
    """Write buffered lines and finalise the open segment (done at exit automatically)."""
    _at_exit()


def _after_fork() -> None:
    _new_prefix()
    _State.lock = threading.Lock()
    if _State.writer is not None:
        _State.writer.reset_after_fork()
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        # A multiprocessing child leaves by os._exit, so atexit never runs; its finalisers do.
        # They are cleared when the child starts, then its after-fork hooks run: register there.
        mp_util.register_after_fork(_State, _register_finaliser)


def _register_finaliser(_: object) -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, _at_exit, exitpriority=10)


_new_prefix()
atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork)
