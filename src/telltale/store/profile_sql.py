"""SQL for the latency profile: per service or operation counts, errors, duration percentiles,
optional self time, and one span's percentile rank among its kind.

Self time of a span is its duration minus the union of its children's intervals, each clipped to
the parent: children that overlap (parallel calls) are merged before subtracting, so overlap is
never subtracted twice, and a child outliving its parent only counts up to the parent's end.
The merge is a window over each parent's children ordered by start: a child adds only the part
of it that lies past the furthest end seen so far.
"""

from __future__ import annotations

from typing import Any

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import is_error, span_filter

QUANTILES = [0.5, 0.9, 0.95, 0.99]
SELF_QUANTILES = [0.5, 0.95]

# Group keys by level, from an allow-list: (service expression, operation expression).
_KEYS = {"operation": ("ServiceName", "SpanName"), "service": ("ServiceName", "NULL")}

_STATS = f"""
    count(*) AS spans,
    count(*) FILTER (WHERE {is_error()}) AS errors,
    quantile_cont(Duration, {QUANTILES}) AS q,
    max(Duration) AS max_ns,
    min(Timestamp) AS first_ns,
    max(Timestamp) AS last_ns
"""

PROFILE = f"""
SELECT {{service}} AS service, {{operation}} AS operation, {_STATS}
FROM otel_traces WHERE {{where}}
GROUP BY ALL
"""

# Children may start after the window ends; only those ending after the first parent's start
# and starting before the last parent's end can overlap one (bounds bound when windowed). Spans
# are keyed by a 64-bit hash of (trace id, span id): joining and partitioning on one integer is
# twice as fast as on the two strings, and a wrong match needs a 64-bit hash collision (about
# 5 in a million chances over 10 M spans).
PROFILE_SELF = f"""
WITH s AS (
    SELECT hash(TraceId, SpanId) AS k, Timestamp, Duration, ServiceName, SpanName, StatusCode
    FROM otel_traces WHERE {{where}}
), kids AS (
    SELECT p.k, greatest(c.Timestamp, p.Timestamp) AS cs,
        least(c.Timestamp + c.Duration, p.Timestamp + p.Duration) AS ce
    FROM otel_traces c JOIN s p ON hash(c.TraceId, c.ParentSpanId) = p.k
    WHERE c.ParentSpanId <> '' AND {{child_where}}
        AND least(c.Timestamp + c.Duration, p.Timestamp + p.Duration)
            > greatest(c.Timestamp, p.Timestamp)
), merged AS (
    SELECT k, cs, ce,
        max(ce) OVER (PARTITION BY k ORDER BY cs
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
    FROM kids
), covered AS (
    SELECT k, sum(greatest(0, ce - greatest(cs, coalesce(reach, cs)))) AS busy
    FROM merged GROUP BY k
), spans AS (
    SELECT s.*, s.Duration - coalesce(c.busy, 0) AS self_ns
    FROM s LEFT JOIN covered c USING (k)
)
SELECT {{service}} AS service, {{operation}} AS operation, {_STATS},
    avg(self_ns) AS self_mean, quantile_cont(self_ns, {SELF_QUANTILES}) AS self_q
FROM spans
GROUP BY ALL
"""

# First start and last end of the spans in scope.
SPAN_EXTENT = """
SELECT min(Timestamp), max(Timestamp + Duration) FROM otel_traces WHERE {where}
"""

# One span against the spans of its service and operation in scope. `below` / `ties` give its
# percent rank ((rank - 1) / (n - 1), rank = 1 + spans strictly faster); `inside` says whether
# it belongs to the population itself.
SPAN_RANK = f"""
WITH x AS (
    SELECT ServiceName, SpanName, Duration, Timestamp, ({{x_where}}) AS inside
    FROM otel_traces x WHERE TraceId = $trace_id AND SpanId = $span_id
    ORDER BY Timestamp LIMIT 1
)
SELECT x.ServiceName, x.SpanName, x.Duration, x.inside,
    count(t.Duration) FILTER (WHERE t.Duration < x.Duration) AS below,
    count(t.Duration) AS n,
    quantile_cont(t.Duration, {QUANTILES}) AS q
FROM x LEFT JOIN otel_traces t
    ON t.ServiceName = x.ServiceName AND t.SpanName = x.SpanName AND {{where}}
GROUP BY ALL
"""


def _keys(by: str) -> tuple[str, str]:
    if by not in _KEYS:
        raise ValueError(f"cannot profile by {by!r}; choose one of {sorted(_KEYS)}")
    return _KEYS[by]


def profile(con: Any, scope: Scope, by: str, self_time: bool) -> list[tuple[Any, ...]]:
    """(service, operation, spans, errors, [p50, p90, p95, p99], max, first, last
    [, self mean, [self p50, self p95]]) per group, durations in ns."""
    service, operation = _keys(by)
    where, params = span_filter(scope)
    if not self_time:
        sql = PROFILE.format(service=service, operation=operation, where=where)
        rows: list[tuple[Any, ...]] = con.execute(sql, params).fetchall()
        return rows
    child_where = "true"
    if scope.since is not None or scope.until is not None:
        # A window over a long store: read only the children that can overlap its spans.
        child_where = "c.Timestamp + c.Duration > $child_lo AND c.Timestamp < $child_hi"
        lo, hi = con.execute(SPAN_EXTENT.format(where=where), params).fetchall()[0]
        params = {**params, "child_lo": lo if lo is not None else 0,
                  "child_hi": hi if hi is not None else 0}
    sql = PROFILE_SELF.format(service=service, operation=operation, where=where,
                              child_where=child_where)
    rows = con.execute(sql, params).fetchall()
    return rows


def span_rank(con: Any, scope: Scope, trace_id: str, span_id: str) -> tuple[Any, ...] | None:
    """(service, operation, duration, inside, below, n, [p50, p90, p95, p99]) or None."""
    where, params = span_filter(scope, "t")
    x_where, x_params = span_filter(scope, "x", prefix="sx")
    sql = SPAN_RANK.format(where=where, x_where=x_where)
    rows = con.execute(sql, {**params, **x_params, "trace_id": trace_id,
                             "span_id": span_id}).fetchall()
    return rows[0] if rows else None
