"""Where a trace's time goes: its critical path, and trace statistics with self time.

Critical path (Jaeger's method): start at the root; take its last-finishing child (children
clipped to their parent's time range), then the child that finished before that one started,
and so on backwards, descending into each chosen child; the parent's own time between them is
the parent's. The segments tile the root's time range, so their shares sum to 100 %. One
trace's handful of spans is walked in Python; statistics over many traces run in SQL.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, trace_sql

MS = 1e6


@dataclass(frozen=True)
class SpanTiming:
    span_id: str
    parent_id: str
    service: str
    operation: str
    start_ns: int
    duration_ns: int

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns


@dataclass(frozen=True)
class Segment:
    """A stretch of the trace's time on the critical path, spent in one span's own work."""

    service: str
    operation: str
    span_id: str
    start_ns: int
    duration_ns: int
    offset_ns: int  # from the root's start
    share: float  # of the root's duration, in %


@dataclass
class CriticalPath:
    trace_id: str
    root: SpanTiming
    segments: list[Segment]
    notes: list[str] = field(default_factory=list)

    def by_operation(self) -> list[tuple[str, str, int, float]]:
        """(service, operation, critical time ns, share %), most critical first."""
        total: dict[tuple[str, str], int] = defaultdict(int)
        for seg in self.segments:
            total[(seg.service, seg.operation)] += seg.duration_ns
        root = max(self.root.duration_ns, 1)
        return sorted(((s, o, ns, 100.0 * ns / root) for (s, o), ns in total.items()),
                      key=lambda r: (-r[2], r[0], r[1]))

    def to_rows(self) -> list[Rows]:
        cols = ["service", "operation", "span_id", "start_offset_ms", "duration_ms", "share_pct"]
        segments = Rows(
            f"critical path of trace {self.trace_id} ({self.root.service}: "
            f"{self.root.operation}, {self.root.duration_ns / MS:,.1f} ms)", cols,
            [{"service": s.service, "operation": s.operation, "span_id": s.span_id,
              "start_offset_ms": s.offset_ns / MS, "duration_ms": s.duration_ns / MS,
              "share_pct": s.share} for s in self.segments],
            list(self.notes), {"trace_id": self.trace_id, "duration_ns": self.root.duration_ns})
        summary = Rows("critical time by operation", ["service", "operation", "critical_ms",
                                                      "share_pct"],
                       [{"service": s, "operation": o, "critical_ms": ns / MS, "share_pct": p}
                        for s, o, ns, p in self.by_operation()])
        return [segments, summary]


def walk(spans: list[SpanTiming], root: SpanTiming) -> list[Segment]:
    """The critical path under `root`, in time order (adjacent pieces of one span merged)."""
    bounds = {root.span_id: (root.start_ns, root.end_ns)}
    children: dict[str, list[SpanTiming]] = defaultdict(list)
    for s in spans:
        children[s.parent_id].append(s)
    by_id = {s.span_id: s for s in spans}
    # Clip top-down: a child outside its parent's (clipped) range is dropped with its subtree.
    kids: dict[str, list[str]] = {}
    todo = [root.span_id]
    while todo:
        pid = todo.pop()
        lo, hi = bounds[pid]
        kept = []
        for c in children.get(pid, []):
            if c.span_id in bounds or c.span_id == pid:
                continue  # a duplicate id or a cycle: already placed
            c_lo, c_hi = max(c.start_ns, lo), min(c.end_ns, hi)
            if c_lo > c_hi or (c_lo == c_hi and not lo <= c.start_ns <= hi):
                continue
            bounds[c.span_id] = (c_lo, c_hi)
            kept.append(c.span_id)
            todo.append(c.span_id)
        # Latest end first (then latest start, then id: deterministic).
        kids[pid] = sorted(kept, key=lambda k: (-bounds[k][1], -bounds[k][0], k))
    parent = {k: pid for pid, ks in kids.items() for k in ks}
    nxt: dict[str, int] = defaultdict(int)  # per span: next child to consider
    pieces: list[tuple[str, int, int]] = []
    cur, until = root.span_id, root.end_ns
    while True:
        ks, i = kids[cur], nxt[cur]
        # Children ending after `until` overlap the part already on the path: never critical.
        while i < len(ks) and bounds[ks[i]][1] > until:
            i += 1
        if i < len(ks):
            child = ks[i]
            nxt[cur] = i + 1
            pieces.append((cur, bounds[child][1], until))
            cur, until = child, bounds[child][1]
            continue
        nxt[cur] = i
        pieces.append((cur, bounds[cur][0], until))
        if cur == root.span_id:
            break
        cur, until = parent[cur], bounds[cur][0]
    merged: list[list[Any]] = []
    for sid, lo, hi in sorted((p for p in pieces if p[2] > p[1]), key=lambda p: p[1]):
        if merged and merged[-1][0] == sid and merged[-1][2] == lo:
            merged[-1][2] = hi
        else:
            merged.append([sid, lo, hi])
    total = max(root.duration_ns, 1)
    return [Segment(by_id[sid].service, by_id[sid].operation, sid, lo, hi - lo,
                    lo - root.start_ns, 100.0 * (hi - lo) / total)
            for sid, lo, hi in merged]


def _pick_root(spans: list[SpanTiming]) -> tuple[SpanTiming, list[str]]:
    roots = [s for s in spans if not s.parent_id]
    notes = []
    if not roots:
        known = {s.span_id for s in spans}
        roots = [s for s in spans if s.parent_id not in known]
        notes.append("the trace has no root span: the path starts at its longest orphan span")
    root = max(roots, key=lambda s: (s.duration_ns, -s.start_ns, s.span_id))
    if len(roots) > 1:
        notes.append(f"{len(roots) - 1} other root/orphan span(s) are outside this path")
    return root, notes


def critical_path(store: Store, trace_id: str) -> CriticalPath:
    trace_id = trace_id.strip().lower()
    rows = trace_sql.trace_spans(store.con, trace_id)
    if not rows:
        raise ValueError(f"no spans for trace {trace_id}")
    spans = [SpanTiming(str(sid), str(pid or ""), str(svc), str(name), int(ts), int(dur))
             for sid, pid, svc, name, ts, dur, _err in rows]
    root, notes = _pick_root(spans)
    return CriticalPath(trace_id, root, walk(spans, root), notes)


def slowest_trace(store: Store, scope: Scope) -> str:
    found = trace_sql.slowest_trace(store.con, scope)
    if found is None:
        raise ValueError("no root span in this window / filter")
    return found


# -- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperationTime:
    service: str
    operation: str
    spans: int
    errors: int
    total_ns: int
    self_ns: int  # summed over the spans: duration minus the union of children's intervals
    mean_self_ns: float
    p50_self_ns: float
    p95_self_ns: float
    self_share: float  # of all self time in the traces, 0..1


@dataclass
class TraceStats:
    traces: int
    spans: int
    spans_p50: float | None
    spans_max: int | None
    depth_p50: float | None
    depth_max: int | None
    max_fanout: int | None
    error_spans: int
    error_traces: int
    unreachable_spans: int  # orphans and their subtrees: not under the root
    root_p50_ns: float | None
    root_p95_ns: float | None
    root_max_ns: int | None
    services: list[str]
    operations: list[OperationTime]
    trace_id: str | None = None  # set for a single trace
    root: str | None = None

    def summary(self) -> dict[str, Any]:
        """The scalar statistics, root latencies in ms."""
        return {(k[:-3] + "_ms" if k.endswith("_ns") else k): (v / MS if k.endswith("_ns")
                                                               and v is not None else v)
                for k, v in self.__dict__.items() if k != "operations"}

    def to_rows(self) -> list[Rows]:
        title = (f"trace {self.trace_id} ({self.root})" if self.trace_id
                 else f"{self.traces:,} traces")
        notes = [f"{self.unreachable_spans:,} span(s) not under their trace's root (orphans "
                 "and their subtrees): counted, but not in depth"] if self.unreachable_spans else []
        summary = Rows(f"statistics of {title}", ["statistic", "value"],
                       [{"statistic": k, "value": v} for k, v in self.summary().items()
                        if k not in ("trace_id", "root")],
                       notes, extra={"summary": self.summary()})
        ops = Rows("self time by operation", [
            "service", "operation", "spans", "errors", "total_ms", "self_ms", "self_share_pct",
            "mean_self_ms", "p50_self_ms", "p95_self_ms"],
            [{"service": o.service, "operation": o.operation, "spans": o.spans,
              "errors": o.errors, "total_ms": o.total_ns / MS, "self_ms": o.self_ns / MS,
              "self_share_pct": 100.0 * o.self_share, "mean_self_ms": o.mean_self_ns / MS,
              "p50_self_ms": o.p50_self_ns / MS, "p95_self_ms": o.p95_self_ns / MS}
             for o in self.operations])
        return [summary, ops]


def _opt(v: Any, cast: type[int] | type[float]) -> Any:
    return None if v is None else cast(v)


def trace_stats(store: Store, scope: Scope | None = None, trace_id: str | None = None) -> TraceStats:
    """Statistics of one trace (`trace_id`) or of every trace whose root the scope selects."""
    if trace_id is not None:
        trace_id = trace_id.strip().lower()
        selection = trace_sql.by_trace(trace_id)
    else:
        selection = trace_sql.by_scope(scope or Scope())
    row, ops = trace_sql.trace_stats(store.con, selection)
    (traces, spans, sp50, smax, dp50, dmax, fan, errs, err_traces, unreach, rp50, rp95, rmax,
     services, root_svc, root_op) = row
    if trace_id is not None and not traces:
        raise ValueError(f"no root span for trace {trace_id}")
    return TraceStats(
        int(traces), int(spans or 0), _opt(sp50, float), _opt(smax, int), _opt(dp50, float),
        _opt(dmax, int), _opt(fan, int), int(errs or 0), int(err_traces or 0),
        int(unreach or 0), _opt(rp50, float), _opt(rp95, float), _opt(rmax, int),
        list(services or []),
        [OperationTime(str(svc), str(op), int(n), int(e), int(tot), int(st), float(mean),
                       float(p50), float(p95), float(share))
         for svc, op, n, e, tot, st, mean, p50, p95, share in ops],
        trace_id if traces == 1 and trace_id else None,
        f"{root_svc}: {root_op}" if traces == 1 and trace_id else None)
