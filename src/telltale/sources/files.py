"""Expand PATH arguments into sources and read them (gzip transparently, detected by magic)."""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
STDIN = "-"


class SourceError(ValueError):
    """A PATH argument names nothing readable."""


@dataclass(frozen=True)
class FileSource:
    """One input: a file path, or `-` for standard input."""

    name: str

    @property
    def size(self) -> int:
        return 0 if self.name == STDIN else Path(self.name).stat().st_size

    def open(self) -> BinaryIO:
        """A stream of the decompressed content (gzip detected by its magic bytes)."""
        raw: BinaryIO = (sys.stdin.buffer if self.name == STDIN
                         else Path(self.name).open("rb"))  # noqa: SIM115 (caller closes)
        if not isinstance(raw, io.BufferedReader):  # e.g. a test runner's in-memory stdin
            raw = io.BufferedReader(raw)  # type: ignore[type-var]
        peek = raw.peek(2)[:2]
        if peek != GZIP_MAGIC:
            return raw
        if self.name == STDIN:
            return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
        raw.close()  # reopen so closing the gzip stream closes the file too
        return gzip.open(self.name, "rb")  # type: ignore[return-value]


def _is_hidden(path: Path) -> bool:
    return any(part.startswith(".") and part not in {".", ".."} for part in path.parts)


def expand(paths: Iterable[str]) -> list[FileSource]:
    """Files as given, directories recursively (sorted, hidden files skipped), globs expanded."""
    out: list[FileSource] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        if p not in seen:
            seen.add(p)
            out.append(FileSource(p))

    for arg in paths:
        if arg == STDIN:
            add(STDIN)
            continue
        path = Path(arg)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not _is_hidden(child.relative_to(path)):
                    add(str(child))
        elif path.is_file():
            add(str(path))
        elif glob.has_magic(arg):
            matches = sorted(m for m in glob.glob(arg, recursive=True) if Path(m).is_file())
            if not matches:
                raise SourceError(f"no files match {arg}")
            for m in matches:
                add(m)
        else:
            raise SourceError(f"no such file or directory: {arg}")
    return out


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
