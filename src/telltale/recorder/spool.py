"""The spool writer: JSON lines into a directory, safe for many threads and processes.

Each process appends to its own hidden segment (`.seg-<host>-<pid>-<n>.part`), so processes never
share a file and cannot interleave; its threads share one writer, and a write is one `write()` of
whole lines on an O_APPEND descriptor (also held under `flock`, so even a forked child that kept
the descriptor cannot tear a line). A segment starts with a header line (lines.py) and is
finalised, when it reaches `max_records` lines or `max_bytes`, by renaming it to `seg-....jsonl`:
ingest (which skips hidden files) only ever sees complete segments. Every failure is counted,
never raised: each process appends its cumulative counters to the hidden `.status.jsonl` when
they change at a flush (its last line is its state), and `read_status` sums them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SEGMENT_SUFFIX = ".jsonl"
STATUS_FILE = ".status.jsonl"
MARKER = "telltale.recorder.status"
_PART = ".part"


@dataclass(frozen=True)
class SpoolConfig:
    path: Path
    max_records: int = 100_000  # lines per segment ("rotate at 1000 entries": 1000)
    max_bytes: int = 64 << 20  # bytes per segment
    keep: int | None = None  # finalised segments kept in the spool (oldest deleted); None: all
    flush_lines: int = 256  # buffered lines that wake the writer thread (1: write on every call)
    flush_seconds: float = 1.0  # a line waits at most about this long for a write


def failure_reason(exc: BaseException) -> str:
    """A short, stable name for why a write failed (the key counted in the status file)."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "disk_full"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "permission_denied"
        return "io_error"
    return "internal_error"


@dataclass
class SpoolWriter:
    """One per process: writes encoded lines (flusher.py encodes them) and rotates segments."""

    config: SpoolConfig
    header: Callable[[], bytes] | None = None  # the first line of every segment (its context)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counters: dict[str, int] = field(default_factory=dict)
    fd: int = -1
    part: Path | None = None
    records: int = 0  # lines in the open segment, its header not included
    size: int = 0
    sequence: int = 0
    reported: dict[str, int] = field(default_factory=dict)  # counters last written to status
    started_ns: int = field(default_factory=time.time_ns)

    def count(self, reason: str, n: int = 1) -> None:
        with self.lock:
            self.counters[reason] = self.counters.get(reason, 0) + n

    def write(self, data: bytes, count: int) -> None:
        """Write `count` whole lines (each ending in a newline), rotating at max_records /
        max_bytes. Never raises: a failed write counts its lines by reason and closes the
        segment (the next write opens a new one)."""
        with self.lock:
            while count > 0:
                room = self.config.max_records - self.records
                batch, n = data, count
                if count > room:  # the rest goes to the next segment
                    cut = _after_lines(data, room)
                    batch, data, n = data[:cut], data[cut:], room
                try:
                    self._write(batch, n)
                except Exception as exc:
                    self._count_locked(failure_reason(exc), count)
                    self._close_quietly()
                    return
                count -= n
                self.counters["written"] = self.counters.get("written", 0) + n
                if self.records >= self.config.max_records or self.size >= self.config.max_bytes:
                    self._finalise_locked()

    def finish(self, finalise: bool = False) -> None:
        """Finalise the open segment (if asked) and report changed counters to the status file."""
        with self.lock:
            if finalise:
                self._finalise_locked()
            self._report_locked()

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's segment is the parent's to write."""
        self.lock = threading.Lock()
        self.counters = {}
        self.reported = {}
        self.fd, self.part, self.records, self.size, self.sequence = -1, None, 0, 0, 0
        self.started_ns = time.time_ns()

    def _count_locked(self, reason: str, n: int) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + n

    def _open(self) -> None:
        self.config.path.mkdir(parents=True, exist_ok=True)
        self.sequence += 1
        name = f"seg-{socket.gethostname()}-{os.getpid()}-{self.started_ns}-{self.sequence:06d}"
        self.part = self.config.path / f".{name}{_PART}"
        self.fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.records = self.size = 0

    def _write(self, data: bytes, lines: int) -> None:
        if self.fd < 0:
            self._open()
        if self.size == 0 and self.header is not None:  # a new segment: its header first
            data = self.header() + b"\n" + data
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            written = os.write(self.fd, data)
            while written < len(data):  # a short write (rare: signals, quotas) is completed
                written += os.write(self.fd, data[written:])
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.records += lines
        self.size += len(data)

    def _finalise_locked(self) -> None:
        """Rename the open segment to its visible name; then apply the retention limit."""
        if self.fd < 0 or self.part is None:
            return
        part, self.part = self.part, None
        self._close_quietly()
        try:
            if self.records == 0:
                part.unlink()
                return
            final = part.with_name(part.name[1:].removesuffix(_PART) + SEGMENT_SUFFIX)
            os.rename(part, final)
        except Exception as exc:
            self._count_locked("finalise_failed:" + failure_reason(exc), 1)
        self.records = self.size = 0
        if self.config.keep is not None:
            self._retain()

    def _retain(self) -> None:
        try:
            segments = sorted(self.config.path.glob("seg-*" + SEGMENT_SUFFIX),
                              key=lambda p: (p.stat().st_mtime_ns, p.name))
            for old in segments[:max(0, len(segments) - (self.config.keep or 0))]:
                old.unlink(missing_ok=True)
                self.counters["rotated_out"] = self.counters.get("rotated_out", 0) + 1
        except Exception as exc:
            self._count_locked("retention:" + failure_reason(exc), 1)

    def _close_quietly(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = -1

    def _report_locked(self) -> None:
        """Append this process's counters to the status file when they changed since last time."""
        if self.counters == self.reported:
            return
        try:
            append_status(self.config.path, socket.gethostname(), os.getpid(), self.started_ns,
                          self.counters)
            self.reported = dict(self.counters)
        except Exception:
            pass


def _after_lines(data: bytes, n: int) -> int:
    """The offset just after the n-th newline of data."""
    at = 0
    for _ in range(n):
        at = data.index(b"\n", at) + 1
    return at


def append_status(spool: Path, host: str, pid: int, started_ns: int,
                  counters: dict[str, int]) -> None:
    line = json.dumps({MARKER: 1, "host": host, "pid": pid, "started_ns": started_ns,
                       "time_ns": time.time_ns(), "counters": counters},
                      sort_keys=True, separators=(",", ":")) + "\n"
    fd = os.open(spool / STATUS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line.encode())  # one short O_APPEND write: whole, never interleaved
    finally:
        os.close(fd)


@dataclass
class SpoolStatus:
    """Totals over every process that wrote to the spool."""

    processes: int = 0
    written: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason → events (or files) lost
    unreadable_lines: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def read_status(spool: str | Path) -> SpoolStatus:
    """Sum the latest counters of each process (missing file: an empty status)."""
    path = Path(spool) / STATUS_FILE
    out = SpoolStatus()
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    latest: dict[tuple[str, int, int], dict[str, int]] = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
            key = (str(row["host"]), int(row["pid"]), int(row["started_ns"]))
            latest[key] = {str(k): int(v) for k, v in row["counters"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            out.unreadable_lines += 1
    out.processes = len(latest)
    for counters in latest.values():
        for reason, n in counters.items():
            if reason == "written":
                out.written += n
            else:
                out.dropped[reason] = out.dropped.get(reason, 0) + n
    out.dropped = dict(sorted(out.dropped.items()))
    return out
