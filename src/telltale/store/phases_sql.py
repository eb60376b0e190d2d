"""Activity of each root operation over a window, in equal time buckets (see
analyses/phases.py): one row per (service, operation, bucket) that had a root span."""

from __future__ import annotations

from typing import Any

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import is_error, span_filter

_BOUNDS = """
SELECT min(Timestamp), max(Timestamp + Duration) FROM otel_traces
WHERE ParentSpanId = '' AND {where}
"""

_BUCKETS = """
SELECT ServiceName, SpanName, (Timestamp - $lo) // $width AS bucket, count(*),
       count(*) FILTER (WHERE {error}), min(Timestamp), max(Timestamp + Duration)
FROM otel_traces
WHERE ParentSpanId = '' AND {where}
GROUP BY ALL
ORDER BY ServiceName, SpanName, bucket
"""


def bounds(con: Any, scope: Scope) -> tuple[int, int] | None:
    """First root start and last root end in scope, or None when there is no root span."""
    where, params = span_filter(scope)
    lo, hi = con.execute(_BOUNDS.format(where=where), params).fetchone()
    return None if lo is None else (int(lo), int(hi))


def buckets(con: Any, scope: Scope, lo: int, width: int) -> list[tuple[Any, ...]]:
    """(service, operation, bucket, roots, errors, first start, last end)."""
    where, params = span_filter(scope)
    sql = _BUCKETS.format(where=where, error=is_error())
    return list(con.execute(sql, {**params, "lo": lo, "width": max(width, 1)}).fetchall())
