"""Reading JSON-lines input one object at a time, rejecting what is not one object per line.

Shared by the line-oriented decoders (mapped events, the recorder's spool, CI JSON lines):
each yields only well-formed objects and records every other non-blank line as a reject with
its line number (bad UTF-8, not JSON, or JSON that is not an object), so none is lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from telltale.model import QuarantineReason, Signal
from telltale.normalize.staging import Reject


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, the file's own numbering
    raw: bytes  # stripped
    text: str
    record: dict[str, Any]

    @property
    def pos(self) -> str:
        return f"line {self.number}"


def objects(data: bytes, rejects: list[Reject], *, signal: Signal = Signal.TRACES,
            what: str = "an event object", first_line: int = 1) -> Iterator[Line]:
    """Each non-blank line that holds one JSON object; the others are appended to `rejects`.
    `first_line` numbers the data's first line (a chunk of a larger file)."""
    for index, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"),
                                start=first_line - 1):
        line = raw.strip()
        if not line:
            continue
        pos = f"line {index + 1}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            rejects.append(Reject(signal, pos, QuarantineReason.BAD_ENCODING,
                                  line.decode("utf-8", "backslashreplace"), str(exc)))
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            rejects.append(Reject(signal, pos, QuarantineReason.UNPARSABLE, text,
                                  f"not JSON: {exc}"))
            continue
        if not isinstance(record, dict):
            rejects.append(Reject(signal, pos, QuarantineReason.BAD_SHAPE, text,
                                  f"a JSON {type(record).__name__}, not {what}"))
            continue
        yield Line(index + 1, line, text, record)
