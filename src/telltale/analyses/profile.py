"""Latency profile per service or operation: traffic, errors, duration percentiles and self time,
and "is this span slow for its kind?" (its percentile rank among spans of its operation).

Throughput is spans per second over the window: the scope's bounds where given, else the first
to the last span start in scope. Self time (a span's duration minus the time covered by its
children, see store/profile_sql.py) needs a join of every span to its children, several times
the cost of the plain profile, so it is computed on request (`self_time=True`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, profile_sql

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


class ProfileBy(StrEnum):
    SERVICE = "service"
    OPERATION = "operation"


class SortKey(StrEnum):
    P95 = "p95"
    COUNT = "count"
    ERRORS = "errors"
    SELF = "self"


@dataclass(frozen=True)
class OpStats:
    service: str
    operation: str | None  # None when profiling by service
    count: int
    errors: int
    per_s: float | None  # None: the window has no length (a single instant)
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    self_mean_ms: float | None = None  # None unless self time was asked for
    self_p50_ms: float | None = None
    self_p95_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0


@dataclass(frozen=True)
class Profile:
    by: ProfileBy
    since: int | None  # the window throughput is measured over (None: nothing in scope)
    until: int | None
    self_time: bool
    rows: list[OpStats]

    def to_rows(self) -> Rows:
        columns = ["service"] + (["operation"] if self.by is ProfileBy.OPERATION else [])
        columns += ["count", "per_s", "errors", "error_pct", "p50_ms", "p90_ms", "p95_ms",
                    "p99_ms", "max_ms"]
        if self.self_time:
            columns += ["self_mean_ms", "self_p50_ms", "self_p95_ms"]
        out = []
        for r in self.rows:
            row: dict[str, Any] = {
                "service": r.service, "operation": r.operation, "count": r.count,
                "per_s": r.per_s, "errors": r.errors, "error_pct": 100.0 * r.error_rate,
                "p50_ms": r.p50_ms, "p90_ms": r.p90_ms, "p95_ms": r.p95_ms, "p99_ms": r.p99_ms,
                "max_ms": r.max_ms}
            if self.self_time:
                row.update(self_mean_ms=r.self_mean_ms, self_p50_ms=r.self_p50_ms,
                           self_p95_ms=r.self_p95_ms)
            out.append({k: row[k] for k in columns})
        notes = [] if self.rows else ["no spans in scope"]
        seconds = None if self.since is None or self.until is None else (
            (self.until - self.since) / NS_PER_S)
        return Rows(f"Latency profile by {self.by.value}", columns, out, notes,
                    extra={"window": {"since_ns": self.since, "until_ns": self.until,
                                      "seconds": seconds}})


def _ms(ns: Any) -> float:
    return float(ns) / NS_PER_MS


def _sort(rows: list[OpStats], key: SortKey) -> list[OpStats]:
    """Largest first; ties by name so output is deterministic."""
    def order(r: OpStats) -> tuple[float, float, str, str]:
        first, second = {
            SortKey.COUNT: (r.count, 0.0),
            SortKey.ERRORS: (r.errors, r.error_rate),
            SortKey.SELF: (r.self_p95_ms or 0.0, 0.0),
            SortKey.P95: (r.p95_ms, 0.0),
        }[key]
        return (-first, -second, r.service, r.operation or "")
    return sorted(rows, key=order)


def profile(store: Store, scope: Scope, *, by: ProfileBy | str = ProfileBy.OPERATION,
            sort: SortKey | str = SortKey.P95, self_time: bool = False) -> Profile:
    """Per-group traffic, errors and latency of the spans in `scope`, slowest p95 first
    (or by count / errors / self-time p95)."""
    by, sort = ProfileBy(by), SortKey(sort)
    if sort is SortKey.SELF and not self_time:
        raise ValueError("sorting by self time needs self time (--self-time)")
    raw = profile_sql.profile(store.con, scope, by.value, self_time)
    since = scope.since if scope.since is not None else min((r[6] for r in raw), default=None)
    until = scope.until if scope.until is not None else max((r[7] for r in raw), default=None)
    seconds = (until - since) / NS_PER_S if since is not None and until is not None else 0.0
    rows = []
    for r in raw:
        service, operation, spans, errors, q, max_ns = r[:6]
        extra: dict[str, float] = {}
        if self_time:
            self_mean, self_q = r[8], r[9]
            extra = {"self_mean_ms": _ms(self_mean), "self_p50_ms": _ms(self_q[0]),
                     "self_p95_ms": _ms(self_q[1])}
        rows.append(OpStats(
            str(service), None if operation is None else str(operation), int(spans), int(errors),
            int(spans) / seconds if seconds > 0 else None,
            _ms(q[0]), _ms(q[1]), _ms(q[2]), _ms(q[3]), _ms(max_ns), **extra))
    return Profile(by, since, until, self_time, _sort(rows, sort))


@dataclass(frozen=True)
class SpanRank:
    """Where one span's duration falls among the spans of its service and operation."""

    trace_id: str
    span_id: str
    service: str
    operation: str
    duration_ms: float
    percent_rank: float  # 0: fastest, 1: slowest (SQL percent_rank over the population)
    population: int  # spans of the same service and operation in scope (with this one)
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def verdict(self) -> str:
        if self.population < 2:
            return "no peers to compare with"
        if self.percent_rank >= 0.99:
            return "very slow for its kind (≥ p99)"
        if self.percent_rank >= 0.95:
            return "slow for its kind (≥ p95)"
        if self.percent_rank >= 0.9:
            return "slower than usual (≥ p90)"
        if self.percent_rank <= 0.1:
            return "faster than usual (≤ p10)"
        return "typical (between p10 and p90)"

    def to_rows(self) -> Rows:
        columns = ["trace_id", "span_id", "service", "operation", "duration_ms", "percentile",
                   "population", "p50_ms", "p95_ms", "p99_ms", "verdict"]
        row = {"trace_id": self.trace_id, "span_id": self.span_id, "service": self.service,
               "operation": self.operation, "duration_ms": self.duration_ms,
               "percentile": 100.0 * self.percent_rank, "population": self.population,
               "p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms,
               "verdict": self.verdict}
        return Rows("Span rank within its operation", columns, [row],
                    extra={"percent_rank": self.percent_rank, "p90_ms": self.p90_ms})


def span_rank(store: Store, trace_id: str, span_id: str, scope: Scope | None = None) -> SpanRank:
    """Is this span slow for its kind? Its percent rank among the spans of the same service and
    operation in `scope` (the whole store by default)."""
    trace_id, span_id = trace_id.strip().lower(), span_id.strip().lower()
    row = profile_sql.span_rank(store.con, scope or Scope(), trace_id, span_id)
    if row is None:
        raise ValueError(f"no span {trace_id}:{span_id} in the store")
    service, operation, duration, inside, below, n, q = row
    population = int(n) + (0 if inside else 1)  # the span itself always counts
    rank = int(below) / (population - 1) if population > 1 else 0.0
    quantiles = [None if v is None else _ms(v) for v in (q or [None] * 4)]
    return SpanRank(trace_id, span_id, str(service), str(operation), _ms(duration), rank,
                    population, *quantiles)
