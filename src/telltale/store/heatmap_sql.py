"""SQL for the latency heatmap: span counts per group × time bucket × latency bucket, and the
busiest / slowest (group, time bucket) cells.

Latency buckets are powers of two of a millisecond: bucket 0 holds durations under 1 ms, bucket
b ≥ 1 holds [2^(b-1), 2^b) ms. Time bucket t holds starts in [t0 + t·width, t0 + (t+1)·width).
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import span_filter

NS_PER_MS = 1_000_000

# Group keys by level, from an allow-list: (service expression, operation expression).
_KEYS = {"operation": ("ServiceName", "SpanName"), "service": ("ServiceName", "NULL")}

_LATENCY_BUCKET = f"""CASE WHEN Duration < {NS_PER_MS} THEN 0
    ELSE floor(log2(Duration / {NS_PER_MS}.0))::INTEGER + 1 END"""

TIME_RANGE = """
SELECT min(Timestamp), max(Timestamp) FROM otel_traces WHERE {where}
"""

# `g` numbers the groups 0.. in name order, so the caller can fill matrices with numpy.
CELLS = f"""
WITH c AS (
    SELECT {{service}} AS service, {{operation}} AS operation,
        (Timestamp - $t0) // $width AS t, {_LATENCY_BUCKET} AS b, count(*) AS n
    FROM otel_traces WHERE {{where}} AND Timestamp >= $t0
    GROUP BY ALL
)
SELECT dense_rank() OVER (ORDER BY service, operation) - 1 AS g, service, operation, t, b, n
FROM c
"""

# The p95 of each (group, time bucket) with enough spans to make a p95 mean something, and
# how it compares with the group's usual p95 (the median over its time buckets).
SLOW_CELLS = """
WITH c AS (
    SELECT {service} AS service, {operation} AS operation, (Timestamp - $t0) // $width AS t,
        count(*) AS n, quantile_cont(Duration, 0.95) AS p95
    FROM otel_traces WHERE {where} AND Timestamp >= $t0
    GROUP BY ALL
    HAVING count(*) >= $min_count
)
SELECT service, operation, t, n, p95,
    p95 / nullif(median(p95) OVER (PARTITION BY service, operation), 0) AS ratio
FROM c
ORDER BY {order} DESC NULLS LAST, service, operation, t
LIMIT $limit
"""

_ORDERS = {"p95": "p95", "ratio": "ratio"}


def _keys(by: str) -> tuple[str, str]:
    if by not in _KEYS:
        raise ValueError(f"cannot build a heatmap by {by!r}; choose one of {sorted(_KEYS)}")
    return _KEYS[by]


def time_range(con: Any, scope: Scope) -> tuple[int | None, int | None]:
    """First and last span start in scope (None, None when nothing is)."""
    where, params = span_filter(scope)
    lo, hi = con.execute(TIME_RANGE.format(where=where), params).fetchall()[0]
    return lo, hi


def cells(con: Any, scope: Scope, by: str, t0: int, width: int) -> dict[str, npt.NDArray[Any]]:
    """Columns g, service, operation, t, b, n (numpy) of every non-empty cell."""
    service, operation = _keys(by)
    where, params = span_filter(scope)
    sql = CELLS.format(service=service, operation=operation, where=where)
    columns: dict[str, npt.NDArray[Any]] = con.execute(
        sql, {**params, "t0": t0, "width": width}).fetchnumpy()
    return columns


def slow_cells(con: Any, scope: Scope, by: str, t0: int, width: int, min_count: int,
               limit: int, order: str = "p95") -> list[tuple[Any, ...]]:
    """(service, operation, time bucket, count, p95 ns, p95 / usual p95), slowest first by
    `order`: the p95 itself or its ratio to the group's usual p95."""
    service, operation = _keys(by)
    if order not in _ORDERS:
        raise ValueError(f"cannot rank slow moments by {order!r}; choose one of {sorted(_ORDERS)}")
    where, params = span_filter(scope)
    sql = SLOW_CELLS.format(service=service, operation=operation, where=where,
                            order=_ORDERS[order])
    rows: list[tuple[Any, ...]] = con.execute(sql, {
        **params, "t0": t0, "width": width, "min_count": min_count, "limit": limit}).fetchall()
    return rows
