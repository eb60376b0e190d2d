"""SQL for whole-trace analyses: one trace's spans, trace statistics and self time, trace diff.

Trace-level analyses start from root spans (no parent id), one per trace (the longest, should a
trace have several), chosen by a *selection*: one trace id, a `Scope` (root starting in the
window, root operation among the scope's operations, trace touching one of its services), or a
root operation in a window (diff groups). Each selection carries a group label (`g`) so two
groups can meet in one query. The fragments below are composed from constants; every value is
a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import is_error, span_filter


@dataclass(frozen=True)
class Selection:
    """Which roots a group holds: a SQL condition on `otel_traces` root rows, its parameters."""

    group: str  # a label from the code ('A', 'B', 'now', 'base'), never user text
    where: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (self.group == "" or self.group.isalnum()):
            raise ValueError(f"bad group label {self.group!r}")


def by_trace(trace_id: str, group: str = "", prefix: str = "tr") -> Selection:
    return Selection(group, f"TraceId = ${prefix}_trace", {f"{prefix}_trace": trace_id})


def by_scope(scope: Scope, group: str = "", prefix: str = "sc") -> Selection:
    """Roots starting in the window, of the scope's operations (root operation), in traces
    that touch one of the scope's services."""
    # The window and operations filter the roots themselves; services select whole traces.
    where, params = span_filter(Scope(scope.since, scope.until, (), scope.operations),
                                prefix=prefix)
    clauses = [where]
    if scope.services:
        clauses.append(f"TraceId IN (SELECT TraceId FROM otel_traces"
                       f" WHERE list_contains(${prefix}_svcs, ServiceName))")
        params[f"{prefix}_svcs"] = list(scope.services)
    return Selection(group, " AND ".join(clauses), params)


def by_root_op(operation: str, since: int | None, until: int | None, group: str,
               prefix: str) -> Selection:
    return by_scope(Scope(since, until, (), (operation,)), group, prefix)


def roots_cte(selections: list[Selection]) -> tuple[str, dict[str, Any]]:
    """`roots(g, TraceId, RootId, RootService, RootOp, RootStart, RootDuration)`."""
    parts, params = [], {}
    for sel in selections:
        parts.append(f"""
    SELECT '{sel.group}' AS g, TraceId, SpanId AS RootId, ServiceName AS RootService,
        SpanName AS RootOp, Timestamp AS RootStart, Duration AS RootDuration
    FROM otel_traces WHERE ParentSpanId = '' AND {sel.where}
    QUALIFY row_number() OVER (PARTITION BY TraceId ORDER BY Duration DESC, SpanId) = 1""")
        params.update(sel.params)
    return "roots AS MATERIALIZED (" + "\n    UNION ALL".join(parts) + "\n)", params


# Every span of the selected traces (one row per span id: a duplicate counts once).
SPANS = f"""
s AS MATERIALIZED (
    SELECT r.g, t.TraceId, t.SpanId, t.ParentSpanId, t.ServiceName, t.SpanName, t.SpanKind,
        t.Timestamp, t.Duration, {is_error('t')} AS err
    FROM otel_traces t JOIN (SELECT DISTINCT g, TraceId FROM roots) r USING (TraceId)
    QUALIFY row_number() OVER (PARTITION BY r.g, t.TraceId, t.SpanId
                               ORDER BY t.Timestamp, t.Duration DESC) = 1
)"""

# The spans reachable from each root, with their depth (root = 1). Orphans are not reachable.
TREE = """
tree(g, TraceId, SpanId, depth) AS (
    SELECT g, TraceId, RootId, 1 FROM roots
    UNION ALL
    SELECT c.g, c.TraceId, c.SpanId, t.depth + 1
    FROM tree t JOIN s c ON c.g = t.g AND c.TraceId = t.TraceId AND c.ParentSpanId = t.SpanId
    WHERE t.depth < 200
)"""

# Self time: a span's duration minus the union of its children's intervals, each clipped to
# the span (overlapping children count once; time a child spends outside its parent is not
# the parent's). The union is gaps-and-islands over the children sorted by start.
SELF_TIME = """
kid AS (
    SELECT c.g, c.TraceId, c.ParentSpanId AS SpanId,
        greatest(c.Timestamp, p.Timestamp) AS ks,
        least(c.Timestamp + c.Duration, p.Timestamp + p.Duration) AS ke
    FROM s c JOIN s p ON p.g = c.g AND p.TraceId = c.TraceId AND p.SpanId = c.ParentSpanId
),
kid_reach AS (
    SELECT *, max(ke) OVER (PARTITION BY g, TraceId, SpanId ORDER BY ks, ke
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
    FROM kid WHERE ke > ks
),
kid_island AS (
    SELECT *, sum(CASE WHEN reach IS NULL OR ks > reach THEN 1 ELSE 0 END)
        OVER (PARTITION BY g, TraceId, SpanId ORDER BY ks, ke ROWS UNBOUNDED PRECEDING) AS island
    FROM kid_reach
),
covered AS (
    SELECT g, TraceId, SpanId, sum(len) AS covered
    FROM (SELECT g, TraceId, SpanId, island, max(ke) - min(ks) AS len
          FROM kid_island GROUP BY ALL)
    GROUP BY ALL
),
selfed AS (
    SELECT s.*, s.Duration - coalesce(covered.covered, 0) AS self
    FROM s LEFT JOIN covered USING (g, TraceId, SpanId)
)"""


def _with(selections: list[Selection], *fragments: str) -> tuple[str, dict[str, Any]]:
    roots, params = roots_cte(selections)
    return "WITH RECURSIVE " + ",\n".join([roots, *fragments]), params


STATS_SUMMARY = """
, per_trace AS (
    SELECT r.TraceId, r.RootService, r.RootOp, r.RootDuration, a.spans, a.errors,
        d.depth, d.reachable, coalesce(f.fanout, 0) AS fanout
    FROM roots r
    JOIN (SELECT TraceId, count(*) AS spans, count(*) FILTER (WHERE err) AS errors
          FROM s GROUP BY 1) a USING (TraceId)
    JOIN (SELECT TraceId, max(depth) AS depth, count(*) AS reachable
          FROM tree GROUP BY 1) d USING (TraceId)
    LEFT JOIN (SELECT TraceId, max(n) AS fanout
               FROM (SELECT TraceId, ParentSpanId, count(*) AS n FROM s
                     WHERE ParentSpanId <> '' GROUP BY ALL)
               GROUP BY 1) f USING (TraceId)
)
SELECT count(*), sum(spans), quantile_cont(spans, 0.5), max(spans),
    quantile_cont(depth, 0.5), max(depth), max(fanout), sum(errors),
    count(*) FILTER (WHERE errors > 0), sum(spans - reachable),
    quantile_cont(RootDuration, 0.5), quantile_cont(RootDuration, 0.95), max(RootDuration),
    (SELECT list(DISTINCT ServiceName ORDER BY ServiceName) FROM s),
    min(RootService), min(RootOp)
FROM per_trace
"""

SELF_BY_OPERATION = """
SELECT ServiceName, SpanName, count(*) AS spans, count(*) FILTER (WHERE err) AS errors,
    sum(Duration) AS total, sum(self) AS self_total, avg(self), quantile_cont(self, 0.5),
    quantile_cont(self, 0.95),
    coalesce(sum(self) / nullif(sum(sum(self)) OVER (), 0), 0) AS self_share
FROM selfed GROUP BY ALL ORDER BY self_total DESC, ServiceName, SpanName
"""


def trace_stats(con: Any, selection: Selection) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """(summary row, self time per operation rows) of the selected traces."""
    sql, params = _with([selection], SPANS, TREE)
    summary = con.execute(sql + STATS_SUMMARY, params).fetchone()
    sql, params = _with([selection], SPANS, SELF_TIME)
    ops: list[tuple[Any, ...]] = con.execute(sql + SELF_BY_OPERATION, params).fetchall()
    return summary, ops


TRACE_SPANS = f"""
SELECT SpanId, ParentSpanId, ServiceName, SpanName, Timestamp, Duration,
    {is_error()} AS err
FROM otel_traces WHERE TraceId = $trace_id ORDER BY Timestamp, SpanId
"""


def trace_spans(con: Any, trace_id: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = con.execute(TRACE_SPANS, {"trace_id": trace_id}).fetchall()
    return rows


def slowest_trace(con: Any, scope: Scope) -> str | None:
    """The trace of the longest root span the scope selects."""
    sel = by_scope(scope)
    row = con.execute(f"SELECT TraceId FROM otel_traces WHERE ParentSpanId = '' AND {sel.where}"
                      " ORDER BY Duration DESC, TraceId LIMIT 1", sel.params).fetchone()
    return None if row is None else str(row[0])


# Diff: every reachable span gets a path of (service: operation) labels from its root, each
# step with its occurrence among same-label siblings when it is not the first. Siblings are
# ordered by what they call (their children's labels), then by start: parallel calls with one
# name ("GET" to two services) would otherwise swap places from trace to trace.
# Per group and path: traces holding it, mean / median duration and self time, and the
# path's self time per trace of the group (its contribution to the group's mean trace).
DIFF_NODES = """
, callees AS (
    SELECT g, TraceId, ParentSpanId AS SpanId,
        string_agg(DISTINCT ServiceName || ': ' || SpanName, ', '
                   ORDER BY ServiceName || ': ' || SpanName) AS calls
    FROM s WHERE ParentSpanId <> '' GROUP BY ALL
),
occ AS (
    SELECT s.*, row_number() OVER (
        PARTITION BY s.g, s.TraceId, s.ParentSpanId, s.ServiceName, s.SpanName
        ORDER BY coalesce(c.calls, ''), s.Timestamp, s.SpanId) AS occ
    FROM s LEFT JOIN callees c USING (g, TraceId, SpanId)
),
paths(g, TraceId, SpanId, depth, path, parent_path) AS (
    SELECT g, TraceId, RootId, 1, RootService || ': ' || RootOp, '' FROM roots
    UNION ALL
    SELECT c.g, c.TraceId, c.SpanId, p.depth + 1,
        p.path || ' > ' || c.ServiceName || ': ' || c.SpanName
            || CASE WHEN c.occ > 1 THEN ' #' || c.occ ELSE '' END,
        p.path
    FROM paths p JOIN occ c ON c.g = p.g AND c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId
    WHERE p.depth < 200
),
sizes AS (SELECT g, count(*) AS traces FROM roots GROUP BY g),
node AS (
    SELECT p.g, p.path, any_value(p.parent_path) AS parent_path, any_value(p.depth) AS depth,
        any_value(x.ServiceName) AS service, any_value(x.SpanName) AS op, count(*) AS n,
        avg(x.Duration) AS mean_dur, quantile_cont(x.Duration, 0.5) AS p50_dur,
        avg(x.self) AS mean_self, sum(x.self) / any_value(z.traces) AS self_per_trace
    FROM paths p JOIN selfed x USING (g, TraceId, SpanId) JOIN sizes z USING (g)
    GROUP BY p.g, p.path
)
SELECT * FROM (
    SELECT path, coalesce(a.parent_path, b.parent_path), coalesce(a.depth, b.depth),
        coalesce(a.service, b.service) AS service, coalesce(a.op, b.op) AS op,
        coalesce(a.n, 0), coalesce(b.n, 0), a.mean_dur, b.mean_dur, a.p50_dur, b.p50_dur,
        a.mean_self, b.mean_self,
        coalesce(b.self_per_trace, 0) - coalesce(a.self_per_trace, 0) AS contribution
    FROM (SELECT * FROM node WHERE g = 'A') a
    FULL OUTER JOIN (SELECT * FROM node WHERE g = 'B') b USING (path)
)
WHERE {keep}
ORDER BY abs(contribution) DESC, path
"""

GROUP_SIZES = "SELECT g, count(*) FROM roots GROUP BY g ORDER BY g"


def diff_nodes(con: Any, a: Selection, b: Selection, services: tuple[str, ...],
               operations: tuple[str, ...]) -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    """(traces per group, node rows A vs B). `services` / `operations` keep only those nodes."""
    keep = ["true"]
    extra: dict[str, Any] = {}
    if services:
        keep.append("list_contains($keep_svcs, service)")
        extra["keep_svcs"] = list(services)
    if operations:
        keep.append("list_contains($keep_ops, op)")
        extra["keep_ops"] = list(operations)
    sql, params = _with([a, b], SPANS, SELF_TIME)
    rows: list[tuple[Any, ...]] = con.execute(
        sql + DIFF_NODES.replace("{keep}", " AND ".join(keep)), {**params, **extra}).fetchall()
    roots, root_params = roots_cte([a, b])
    sizes = {str(g): int(n) for g, n in
             con.execute(f"WITH {roots} {GROUP_SIZES}", root_params).fetchall()}
    return sizes, rows
