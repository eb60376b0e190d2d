"""Ingest batches: what one part of a commit is (its source and idempotency key) and what it
contributed (stored per signal, quarantined per reason)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from telltale.model import QuarantineReason, Signal


@dataclass(frozen=True)
class BatchSource:
    """One part of a commit: where it came from, how it was read, and its idempotency key."""

    source: str
    fmt: str
    content_hash: str


@dataclass
class BatchReport:
    """What one committed source contributed: read = stored + quarantined, always."""

    source: str
    format: str
    batch_id: int | None = None
    stored: Counter[Signal] = field(default_factory=Counter)
    quarantined: Counter[QuarantineReason] = field(default_factory=Counter)
    already_ingested: bool = False

    @property
    def records_read(self) -> int:
        return sum(self.stored.values()) + sum(self.quarantined.values())

    @property
    def total_stored(self) -> int:
        return sum(self.stored.values())

    @property
    def total_quarantined(self) -> int:
        return sum(self.quarantined.values())
