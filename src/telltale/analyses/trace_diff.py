"""Trace diff: two traces, or two groups of traces of one root operation, compared as trees.

Spans are aligned by their path of (service: operation) labels from the root, each step with
its occurrence among same-label siblings ("db: SELECT #3" is the third such query under that
parent). For every aligned node: how many traces hold it, its latency in A and B (mean and
median for groups) with delta and ratio, and its *contribution*: the change in its self time per
trace of the group (a node only in B contributes all its self time). The contributions of all
nodes add up to the change in the traces' summed self time, so sorting by them puts what
changed the latency first. Structure changes roll nodes up to (parent path, operation): an
operation added or removed, or repeated more or fewer times per trace.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, trace_sql

MS = 1e6


@dataclass(frozen=True)
class TraceGroup:
    """One trace, or the traces whose root is `root_op` and starts in [since, until)."""

    trace_id: str | None = None
    root_op: str | None = None
    since: int | None = None
    until: int | None = None

    def selection(self, label: str) -> trace_sql.Selection:
        prefix = label.lower()
        if self.trace_id is not None:
            return trace_sql.by_trace(self.trace_id.strip().lower(), label, prefix)
        if self.root_op is None:
            raise ValueError("a trace group needs a trace id or a root operation")
        return trace_sql.by_root_op(self.root_op, self.since, self.until, label, prefix)

    def describe(self) -> str:
        if self.trace_id is not None:
            return f"trace {self.trace_id}"
        return f"'{self.root_op}' roots in [{self.since}, {self.until})"


class Change(StrEnum):
    ADDED = "added"  # only in B
    REMOVED = "removed"  # only in A
    MORE = "more"  # repeated more times per trace in B
    FEWER = "fewer"
    SAME = "same"


@dataclass(frozen=True)
class NodeDiff:
    path: str
    parent_path: str
    depth: int
    service: str
    operation: str
    a_traces: int  # traces of A holding this node
    b_traces: int
    a_mean_ns: float | None
    b_mean_ns: float | None
    a_p50_ns: float | None
    b_p50_ns: float | None
    a_self_ns: float | None  # mean self time
    b_self_ns: float | None
    contribution_ns: float  # change in self time per trace

    @property
    def change(self) -> Change:
        if not self.a_traces:
            return Change.ADDED
        return Change.REMOVED if not self.b_traces else Change.SAME

    @property
    def delta_ns(self) -> float | None:
        if self.a_mean_ns is None or self.b_mean_ns is None:
            return None
        return self.b_mean_ns - self.a_mean_ns

    @property
    def ratio(self) -> float | None:
        if self.a_mean_ns is None or self.b_mean_ns is None or not self.a_mean_ns:
            return None
        return self.b_mean_ns / self.a_mean_ns


@dataclass(frozen=True)
class StructureChange:
    """How often an operation runs under one parent path, per trace, in A and in B."""

    parent_path: str
    service: str
    operation: str
    a_per_trace: float
    b_per_trace: float
    contribution_ns: float

    @property
    def change(self) -> Change:
        if not self.a_per_trace:
            return Change.ADDED
        if not self.b_per_trace:
            return Change.REMOVED
        if self.b_per_trace > self.a_per_trace:
            return Change.MORE
        return Change.FEWER if self.b_per_trace < self.a_per_trace else Change.SAME


@dataclass
class TraceDiff:
    a: TraceGroup
    b: TraceGroup
    a_traces: int
    b_traces: int
    nodes: list[NodeDiff]
    structure: list[StructureChange]

    def to_rows(self) -> list[Rows]:
        ms = _ms
        single = self.a.trace_id is not None and self.b.trace_id is not None
        structure = Rows(
            "structure changes (operations per trace, A → B)",
            ["change", "parent_path", "service", "operation", "a_per_trace", "b_per_trace",
             "contribution_ms"],
            [{"change": s.change.value, "parent_path": s.parent_path or "(root)",
              "service": s.service, "operation": s.operation, "a_per_trace": s.a_per_trace,
              "b_per_trace": s.b_per_trace, "contribution_ms": ms(s.contribution_ns)}
             for s in self.structure],
            [] if self.structure else ["same structure in A and B"])
        nodes = Rows(
            f"aligned nodes: A = {self.a.describe()} ({self.a_traces} traces), "
            f"B = {self.b.describe()} ({self.b_traces} traces)",
            # Medians say something only for groups; self times are in the JSON.
            ["path", "change", "a_traces", "b_traces", "a_mean_ms", "b_mean_ms", "delta_ms",
             "ratio", *([] if single else ["a_p50_ms", "b_p50_ms"]), "contribution_ms"],
            [{"path": n.path, "service": n.service, "operation": n.operation, "depth": n.depth,
              "change": n.change.value, "a_traces": n.a_traces, "b_traces": n.b_traces,
              "a_mean_ms": ms(n.a_mean_ns), "b_mean_ms": ms(n.b_mean_ns),
              "delta_ms": ms(n.delta_ns), "ratio": n.ratio, "a_p50_ms": ms(n.a_p50_ns),
              "b_p50_ms": ms(n.b_p50_ns), "a_self_ms": ms(n.a_self_ns),
              "b_self_ms": ms(n.b_self_ns), "contribution_ms": ms(n.contribution_ns)}
             for n in self.nodes],
            extra={"a_traces": self.a_traces, "b_traces": self.b_traces})
        return [structure, nodes]


def _ms(ns: float | None) -> float | None:
    return None if ns is None else ns / MS


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def trace_diff(store: Store, a: TraceGroup, b: TraceGroup, scope: Scope | None = None,
               min_count_delta: float = 0.5) -> TraceDiff:
    """Compare A (before) with B (after). `scope`'s services / operations keep only those
    nodes; an operation whose count per trace changes by less than `min_count_delta` (for
    groups; any change for single traces) is not a structure change."""
    scope = scope or Scope()
    sizes, rows = trace_sql.diff_nodes(store.con, a.selection("A"), b.selection("B"),
                                       scope.services, scope.operations)
    na, nb = sizes.get("A", 0), sizes.get("B", 0)
    for group, size in ((a, na), (b, nb)):
        if not size:
            raise ValueError(f"nothing to compare: no root span for {group.describe()}")
    nodes = [NodeDiff(str(path), str(pp), int(depth), str(svc), str(op), int(an), int(bn),
                      _f(am), _f(bm), _f(ap), _f(bp), _f(ase), _f(bse), float(contrib))
             for path, pp, depth, svc, op, an, bn, am, bm, ap, bp, ase, bse, contrib in rows]
    # Roll the (few, already aggregated) node rows up to operation counts per parent path.
    counts: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for n in nodes:
        c = counts[(n.parent_path, n.service, n.operation)]
        c[0] += n.a_traces / na
        c[1] += n.b_traces / nb
        c[2] += n.contribution_ns
    single = a.trace_id is not None and b.trace_id is not None
    threshold = 1.0 if single else min_count_delta
    structure = [StructureChange(pp, svc, op, ca, cb, contrib)
                 for (pp, svc, op), (ca, cb, contrib) in counts.items()
                 if (ca == 0) != (cb == 0) or abs(cb - ca) >= threshold - 1e-9]
    structure.sort(key=lambda s: (-abs(s.contribution_ns), s.parent_path, s.service, s.operation))
    return TraceDiff(a, b, na, nb, nodes, structure)
