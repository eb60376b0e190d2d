"""Expand PATH arguments into sources and read them (gzip transparently, detected by magic)."""

from __future__ import annotations

import glob
import gzip
import hashlib
import sys
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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

    def read(self) -> bytes:
        """The whole content, decompressed. Raises SourceError on a corrupt gzip stream."""
        raw = sys.stdin.buffer.read() if self.name == STDIN else Path(self.name).read_bytes()
        if raw[:2] == GZIP_MAGIC:
            try:
                return gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as exc:
                raise SourceError(f"{self.name}: corrupt gzip data ({exc})") from exc
        return raw


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
