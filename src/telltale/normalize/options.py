"""Options every decoder receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telltale.model import Signal


@dataclass(frozen=True)
class DecodeOptions:
    """`mapping` configures the mapped formats (CSV spans, JSON-lines events); see docs/mapping.md.

    `signal` forces the OTLP signal for protobuf input whose message type cannot be inferred.
    `first_line` numbers the data's first line when it is one chunk of a larger line-oriented
    file, so positions in quarantine are the file's own line numbers.
    """

    source: str = "-"
    mapping: dict[str, Any] = field(default_factory=dict)
    signal: Signal | None = None
    first_line: int = 1
