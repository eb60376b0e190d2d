"""`ingest --follow`: tail a growing file of logs or OTLP JSON lines (the Collector's file
exporter) into the store, surviving rotation.

Each poll reads what was appended and commits the complete records in it (one batch per
commit, keyed by file identity, byte range, first line and content). A restart resumes after
the last batch committed from the same file (same inode, and that batch's bytes still there),
so nothing is stored twice. The last record is held back until the next one starts or the file
has been quiet for `quiet_s`, so a stack trace still being written is not cut in two (a line of
OTLP JSON is a whole request: every complete line is committed). Rotation:
when the path names a new inode, the old file is drained first and the new one read from its
start; a file that shrank (truncated in place, `copytruncate`) is read again from its start.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from telltale.model import Format
from telltale.normalize import otlp_json, text_logs
from telltale.normalize.detect import HEAD_BYTES, DetectionError, detect, is_json_lines
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded
from telltale.store.batches import BatchReport


class FollowError(ValueError):
    """A file that cannot be followed (said in one line)."""


class Committer(Protocol):
    def commit(self, decoded: Decoded, *, source: str, fmt: str,
               content_hash: str) -> BatchReport: ...

    def last_batch_key(self, prefix: str) -> str | None: ...


def _key(inode: int, offset: int, end: int, line: int, digest: str) -> str:
    return f"follow:{inode}:{offset}:{end}:{line}:{digest}"


def _resume_point(key: str | None, handle: BinaryIO) -> tuple[int, int] | None:
    """(offset, line) just after the batch `key` names, if the open file still holds its bytes."""
    if key is None:
        return None
    try:
        _, _, offset_s, end_s, line_s, digest = key.split(":")
        offset, end, line = int(offset_s), int(end_s), int(line_s)
    except ValueError:  # a key written before keys named their end
        return None
    handle.seek(offset)
    data = handle.read(end - offset)
    if len(data) != end - offset or hashlib.sha256(data).hexdigest()[:32] != digest:
        return None
    return end, line + data.count(b"\n")


@dataclass
class FollowState:
    """Where the follower is: open file, its inode, byte offset, line number, unsent bytes."""

    reports: list[BatchReport] = field(default_factory=list)
    rotations: int = 0
    handle: BinaryIO | None = None
    inode: int = -1
    offset: int = 0  # bytes of the current file already committed
    line: int = 1  # number of the first uncommitted line
    pending: bytes = b""
    last_data: float = 0.0


class _Follower:
    def __init__(self, store: Committer, path: Path, options: DecodeOptions, quiet_s: float,
                 fmt: str) -> None:
        self.store, self.path, self.options, self.quiet_s, self.fmt = store, path, options, quiet_s, fmt
        self.json_lines = fmt == Format.OTLP_JSON.value
        self.decode = otlp_json.decode if self.json_lines else text_logs.decode
        self.starts = text_logs.record_start(options)
        self.state = FollowState(last_data=time.monotonic())

    def open(self, resume: bool = False) -> None:
        """Open the path from its start, or with `resume` just after the last batch committed
        from this very file."""
        s = self.state
        if s.handle is not None:
            s.handle.close()
        s.handle = self.path.open("rb")
        s.inode, s.offset, s.line, s.pending = os.fstat(s.handle.fileno()).st_ino, 0, 1, b""
        point = (_resume_point(self.store.last_batch_key(f"follow:{s.inode}:"), s.handle)
                 if resume else None)
        s.offset, s.line = point or (0, 1)
        s.handle.seek(s.offset)

    def _commit(self, data: bytes) -> None:
        s = self.state
        if data.strip():
            digest = hashlib.sha256(data).hexdigest()[:32]
            options = DecodeOptions(source=str(self.path), mapping=self.options.mapping,
                                    first_line=s.line)
            s.reports.append(self.store.commit(
                self.decode(data, options), source=f"{self.path}:{s.line}", fmt=self.fmt,
                content_hash=_key(s.inode, s.offset, s.offset + len(data), s.line, digest)))
        s.offset += len(data)
        s.line += data.count(b"\n")

    def drain(self, final: bool) -> None:
        """Read what was appended; commit complete records (all of it when `final`/quiet)."""
        s = self.state
        assert s.handle is not None
        fresh = s.handle.read()
        now = time.monotonic()
        if fresh:
            s.pending += fresh
            s.last_data = now
        cut = len(s.pending) if final else s.pending.rfind(b"\n") + 1
        if not final and not self.json_lines and now - s.last_data < self.quiet_s:
            cut = self._last_start(s.pending[:cut])
        if cut > 0:
            chunk, s.pending = s.pending[:cut], s.pending[cut:]
            self._commit(chunk)

    def _last_start(self, complete: bytes) -> int:
        """Offset of the last line that starts a record: what follows may still grow."""
        end = len(complete)
        while end > 0:
            begin = complete.rfind(b"\n", 0, end - 1) + 1
            if self.starts(complete[begin:end].decode("utf-8", "replace").rstrip("\r\n")):
                return begin
            end = begin
        return 0

    def poll(self) -> None:
        s = self.state
        try:
            stat = self.path.stat()
        except FileNotFoundError:  # between rename and re-create: keep the old file
            self.drain(final=False)
            return
        if stat.st_ino != s.inode:
            self.drain(final=True)
            self.open()
            s.rotations += 1
        elif stat.st_size < s.offset + len(s.pending):  # truncated: what was read is whole
            self.drain(final=True)
            assert s.handle is not None
            s.handle.seek(0)
            s.offset, s.line, s.pending = 0, 1, b""
            s.rotations += 1
        self.drain(final=False)


def follow_format(path: str | Path) -> str:
    """OTLP JSON lines when the file's start says so; plain-text logs otherwise (also for a
    file still empty: pass --format otlp-json to follow an exporter's file from its creation)."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    try:
        found = detect(head, str(path)).format
    except DetectionError:
        return Format.LOG_TEXT.value
    if found is not Format.OTLP_JSON:
        return Format.LOG_TEXT.value
    if not is_json_lines(head):
        raise FollowError(f"{path} is one OTLP JSON document, not JSON lines: ingest it without "
                          "--follow")
    return Format.OTLP_JSON.value


def follow(store: Committer, path: str | Path, *, options: DecodeOptions | None = None,
           poll_s: float = 1.0, quiet_s: float = 2.0, from_end: bool = False,
           stop: Callable[[], bool] = lambda: False, fmt: str = "log") -> FollowState:
    """Tail `path` into `store` until `stop()` is true; returns what was committed.

    `from_end` starts at the current end (only new lines), as `tail -f` does."""
    follower = _Follower(store, Path(path), options or DecodeOptions(source=str(path)), quiet_s, fmt)
    follower.open(resume=not from_end)
    state = follower.state
    if from_end and state.handle is not None:
        state.offset = state.handle.seek(0, os.SEEK_END)
    while True:
        follower.poll()
        if stop():
            break
        time.sleep(poll_s)
    follower.drain(final=True)
    if state.handle is not None:
        state.handle.close()
    return state
