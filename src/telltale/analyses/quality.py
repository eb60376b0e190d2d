"""Trace-quality report: what arrived, what was quarantined and why, what is flagged, a score.

Score (per group and per time bucket) = good / (stored + quarantined), where *good* counts
stored spans whose whole trace is complete and consistent: it has a root span, and none of its
spans is an orphan, a duplicate, or outside its parent's time range. Quarantined trace records
count against the score; flagged spans are stored but not good. 1.0 means every record that
arrived is in a clean trace; a score of None means nothing arrived.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import StrEnum

from telltale.model import QualityFlag, QuarantineReason, Signal
from telltale.store import Store, quality_sql

NS = 1_000_000_000
_TARGET_BUCKETS = 12
_NICE_BUCKETS_S = [1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400]


class GroupBy(StrEnum):
    SOURCE = "source"
    SERVICE = "service"


@dataclass
class QualityCounts:
    stored: int = 0
    quarantined: Counter[QuarantineReason] = field(default_factory=Counter)
    flags: Counter[QualityFlag] = field(default_factory=Counter)
    good: int = 0

    @property
    def received(self) -> int:
        return self.stored + sum(self.quarantined.values())

    @property
    def score(self) -> float | None:
        return self.good / self.received if self.received else None

    def add(self, other: QualityCounts) -> None:
        self.stored += other.stored
        self.quarantined.update(other.quarantined)
        self.flags.update(other.flags)
        self.good += other.good


@dataclass
class GroupQuality:
    key: str
    spans: QualityCounts
    # Per time bucket (start ns); quarantined records without a readable time are in `spans` only.
    buckets: dict[int, QualityCounts]
    logs_stored: int = 0
    metrics_stored: int = 0
    other_quarantined: Counter[Signal] = field(default_factory=Counter)


@dataclass
class QualityReport:
    by: GroupBy
    since: int
    until: int
    bucket_ns: int
    groups: list[GroupQuality]
    total: QualityCounts


def pick_bucket(since: int, until: int) -> int:
    span_s = max(1, (until - since) // NS)
    for b in _NICE_BUCKETS_S:
        if span_s / b <= _TARGET_BUCKETS:
            return b * NS
    return _NICE_BUCKETS_S[-1] * NS


def quality(store: Store, *, by: GroupBy = GroupBy.SOURCE, since: int | None = None,
            until: int | None = None, bucket_ns: int | None = None,
            skew_tolerance_ns: int = 1_000) -> QualityReport:
    lo, hi = quality_sql.time_range(store.con)
    since = since if since is not None else (lo or 0)
    until = until if until is not None else ((hi or 0) + 1)
    bucket_ns = bucket_ns or pick_bucket(since, until)
    rows = quality_sql.fetch(store.con, by.value, since, until, bucket_ns, skew_tolerance_ns)

    groups: dict[str, GroupQuality] = {}

    def group(key: str) -> GroupQuality:
        if key not in groups:
            groups[key] = GroupQuality(key, QualityCounts(), defaultdict(QualityCounts))
        return groups[key]

    for key, bucket, stored, orphan, dup, skew, no_root, good in rows["spans"]:
        c = QualityCounts(stored=stored, good=good, flags=Counter({
            QualityFlag.ORPHAN: orphan, QualityFlag.DUPLICATE: dup,
            QualityFlag.CLOCK_SKEW: skew, QualityFlag.NO_ROOT: no_root}))
        g = group(key)
        g.spans.add(c)
        g.buckets[int(bucket)].add(c)
    for key, bucket, reason, n in rows["quarantined"]:
        g = group(key)
        g.spans.quarantined[QuarantineReason(reason)] += n
        if bucket is not None:
            g.buckets[int(bucket)].quarantined[QuarantineReason(reason)] += n
    for signal, key, n in rows["other"]:
        g = group(key)
        if signal == "logs":
            g.logs_stored += n
        else:
            g.metrics_stored += n
    for signal, key, n in rows["other_quarantined"]:
        group(key).other_quarantined[Signal(signal)] += n

    total = QualityCounts()
    for g in groups.values():
        total.add(g.spans)
    ordered = sorted(groups.values(), key=lambda g: g.key)
    for g in ordered:
        g.buckets = dict(sorted(g.buckets.items()))
    return QualityReport(by, since, until, bucket_ns, ordered, total)
