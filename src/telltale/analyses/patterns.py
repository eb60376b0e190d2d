"""Structural patterns across traces: frequent shapes, new shapes, N+1 calls, retry loops.

- shapes: traces grouped by their canonical structure signature, per root operation (see
  `store.patterns_sql`), with count, share of the root operation's traces and root latency.
- new shapes: shapes of a window that no trace of a baseline window has (a new code path, a
  call that appeared, a loop); the baseline defaults to the same length just before.
- N+1: one parent span issuing the same call (service + operation, client spans by default)
  `min_repeats` or more times, typically one query per item instead of one query for all.
- retry loops: consecutive sibling calls to one operation where the earlier attempts failed.

Window and filters: shapes select traces by their root (root starting in the window, root
operation among `--operation`, trace touching a `--service`); N+1 and retries select the
repeated spans themselves (their start, service and operation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from telltale.analyses.scope import Scope
from telltale.model import SpanKind
from telltale.render.rows import Rows
from telltale.store import Store, patterns_sql
from telltale.store.trace_sql import by_scope

MS = 1e6
_SIG_SHOWN = 160  # characters of a signature in the terminal table (JSON has all of it)


@dataclass(frozen=True)
class Shape:
    root_service: str
    root_operation: str
    shape_id: str  # md5 of the signature, 12 hex digits
    traces: int
    share: float  # of the root operation's traces, 0..1
    p50_ns: float
    p95_ns: float
    p99_ns: float
    spans: int
    example_trace: str
    signature: str


def _shape(row: tuple[Any, ...]) -> Shape:
    svc, op, shape, n, share, p50, p95, p99, nodes, example, sig = row
    return Shape(str(svc), str(op), str(shape), int(n), float(share), float(p50), float(p95),
                 float(p99), int(nodes), str(example), str(sig))


def _shape_rows(title: str, shapes: list[Shape], notes: list[str],
                extra: dict[str, Any] | None = None) -> Rows:
    def short(sig: str) -> str:
        return sig if len(sig) <= _SIG_SHOWN else sig[:_SIG_SHOWN - 1] + "…"

    return Rows(title, ["root_service", "root_operation", "shape", "traces", "share_pct",
                        "p50_ms", "p95_ms", "p99_ms", "spans", "example_trace", "signature"],
                [{"root_service": s.root_service, "root_operation": s.root_operation,
                  "shape": s.shape_id, "traces": s.traces, "share_pct": 100.0 * s.share,
                  "p50_ms": s.p50_ns / MS, "p95_ms": s.p95_ns / MS, "p99_ms": s.p99_ns / MS,
                  "spans": s.spans, "example_trace": s.example_trace,
                  "signature": short(s.signature), "full_signature": s.signature}
                 for s in shapes], notes, extra or {})


@dataclass
class Shapes:
    shapes: list[Shape]

    def to_rows(self) -> Rows:
        return _shape_rows("trace shapes (most frequent first)", self.shapes,
                           [] if self.shapes else ["no root spans in this window / filter"])


def shapes(store: Store, scope: Scope | None = None, limit: int = 200) -> Shapes:
    rows = patterns_sql.shapes(store.con, by_scope(scope or Scope(), "now"), limit)
    return Shapes([_shape(r) for r in rows])


@dataclass
class NewShapes:
    since: int
    until: int
    baseline_since: int
    baseline_until: int
    shapes: list[Shape]

    def to_rows(self) -> Rows:
        window = {"since": self.since, "until": self.until,
                  "baseline_since": self.baseline_since, "baseline_until": self.baseline_until}
        return _shape_rows("shapes new since the baseline", self.shapes,
                           [] if self.shapes else ["no new shapes: every shape of the window "
                                                   "occurs in the baseline"], window)


def new_shapes(store: Store, scope: Scope, baseline_since: int | None = None,
               baseline_until: int | None = None, limit: int = 200) -> NewShapes:
    """Shapes of `scope`'s window absent from the baseline window (same root operation). The
    window needs a start; its end defaults to the last span; the baseline to the same length
    just before the window."""
    if scope.since is None:
        raise ValueError("new shapes need a window start (--since or --last)")
    until = scope.until
    if until is None:
        last = patterns_sql.span_range(store.con)[1]
        until = scope.since if last is None else max(int(last) + 1, scope.since)
    base_until = scope.since if baseline_until is None else baseline_until
    base_since = base_until - (until - scope.since) if baseline_since is None else baseline_since
    if base_since >= base_until:
        raise ValueError("the baseline window is empty")
    now = scope.with_window(scope.since, until)
    base = scope.with_window(base_since, base_until)
    rows = patterns_sql.new_shapes(store.con, by_scope(now, "now", "now"),
                                   by_scope(base, "base", "base"), limit)
    return NewShapes(scope.since, until, base_since, base_until, [_shape(r) for r in rows])


@dataclass(frozen=True)
class Repetition:
    """A call repeated under one parent (N+1), or a retry loop, grouped by parent and call."""

    parent_service: str
    parent_operation: str
    service: str
    operation: str
    occurrences: int  # parent spans with the pattern (N+1) or loops (retries)
    traces: int
    max_repeats: int
    mean_repeats: float
    examples: list[str]


@dataclass(frozen=True)
class NPlusOne(Repetition):
    median_repeats: float = 0.0
    mean_total_ns: float = 0.0  # the repeated calls' summed duration, per parent
    share_of_parent: float | None = None  # that sum over the parent's duration (mean)


@dataclass
class NPlusOneReport:
    min_repeats: int
    kinds: tuple[SpanKind, ...]
    findings: list[NPlusOne]

    def to_rows(self) -> Rows:
        kinds = ", ".join(k.value for k in self.kinds) or "any"
        return Rows(
            f"N+1: same call repeated ≥ {self.min_repeats}× under one parent ({kinds} spans)",
            ["parent_service", "parent_operation", "service", "operation", "parents", "traces",
             "max_repeats", "median_repeats", "mean_total_ms", "share_of_parent_pct",
             "example"],
            [{"parent_service": f.parent_service, "parent_operation": f.parent_operation,
              "service": f.service, "operation": f.operation, "parents": f.occurrences,
              "traces": f.traces, "max_repeats": f.max_repeats,
              "median_repeats": f.median_repeats, "mean_repeats": f.mean_repeats,
              "mean_total_ms": f.mean_total_ns / MS,
              "share_of_parent_pct": None if f.share_of_parent is None
              else 100.0 * f.share_of_parent, "example": f.examples[0] if f.examples else None,
              "examples": f.examples}
             for f in self.findings],
            [] if self.findings else ["no N+1 pattern found"])


def n_plus_one(store: Store, scope: Scope | None = None, min_repeats: int = 5,
               kinds: tuple[SpanKind, ...] = (SpanKind.CLIENT,), examples: int = 3
               ) -> NPlusOneReport:
    """Parents with ≥ `min_repeats` children of one service + operation of these kinds
    (empty: any kind)."""
    if min_repeats < 2:
        raise ValueError("--min-repeats must be at least 2")
    rows = patterns_sql.n_plus_one(store.con, scope or Scope(), tuple(k.value for k in kinds),
                                   min_repeats, examples)
    return NPlusOneReport(min_repeats, kinds, [
        NPlusOne(str(ps), str(po), str(s), str(o), int(parents), int(traces), int(mx),
                 float(mean), list(ex), float(med), float(total),
                 None if share is None else float(share))
        for ps, po, s, o, parents, traces, mx, med, mean, total, share, ex in rows])


@dataclass(frozen=True)
class RetryLoop(Repetition):
    recovered: int = 0  # loops whose last attempt succeeded
    gave_up: int = 0  # loops whose last attempt failed too


@dataclass
class Retries:
    loops: list[RetryLoop]

    def to_rows(self) -> Rows:
        return Rows(
            "retry loops: failed calls repeated to the same operation",
            ["parent_service", "parent_operation", "service", "operation", "loops", "traces",
             "max_attempts", "mean_attempts", "recovered", "gave_up", "example"],
            [{"parent_service": r.parent_service, "parent_operation": r.parent_operation,
              "service": r.service, "operation": r.operation, "loops": r.occurrences,
              "traces": r.traces, "max_attempts": r.max_repeats,
              "mean_attempts": r.mean_repeats, "recovered": r.recovered,
              "gave_up": r.gave_up, "example": r.examples[0] if r.examples else None,
              "examples": r.examples} for r in self.loops],
            [] if self.loops else ["no retry loop found"])


def retries(store: Store, scope: Scope | None = None, examples: int = 3) -> Retries:
    rows = patterns_sql.retries(store.con, scope or Scope(), examples)
    return Retries([RetryLoop(str(ps), str(po), str(s), str(o), int(n), int(traces), int(mx),
                              float(mean), list(ex), int(rec), int(gave))
                    for ps, po, s, o, n, traces, mx, mean, rec, gave, ex in rows])
