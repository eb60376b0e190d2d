"""SQL that reads whole spans back: one trace with every column, and trace ids that match a search.

The views (trace page, Jaeger API, Mermaid, waterfalls) need every column of a handful of spans,
so these queries select rows, not aggregates; every value is a bound parameter.
"""

from __future__ import annotations

from typing import Any

from telltale.store.scope_sql import is_error

# DuckDB returns MAP columns as Python dicts and STRUCT lists as lists of dicts.
_SPAN_COLUMNS = f"""TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName,
    ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Timestamp, Duration,
    StatusCode, StatusMessage, Events, Links, {is_error()} AS err"""

TRACE_SPANS = f"""
SELECT {_SPAN_COLUMNS}
FROM otel_traces
WHERE TraceId = $trace
ORDER BY Timestamp, SpanId, Duration DESC
"""

# The same for many traces in one scan (a page of search results), grouped by trace.
TRACES_SPANS = f"""
SELECT {_SPAN_COLUMNS}
FROM otel_traces
WHERE TraceId IN (SELECT unnest($traces))
ORDER BY TraceId, Timestamp, SpanId, Duration DESC
"""


def search_sql(*, service: str | None, operation: str | None, since: int | None,
               until: int | None, min_duration: int | None, max_duration: int | None,
               errors_only: bool, attributes: dict[str, str], limit: int
               ) -> tuple[str, dict[str, Any]]:
    """Trace ids whose spans match every filter (one span must match them all, as in Jaeger),
    newest trace first, with the trace's start, duration, span count and error count."""
    where = ["TRUE"]
    params: dict[str, Any] = {"limit": limit}
    if service:
        where.append("ServiceName = $service")
        params["service"] = service
    if operation:
        where.append("SpanName = $operation")
        params["operation"] = operation
    if since is not None:
        where.append("Timestamp >= $since")
        params["since"] = since
    if until is not None:
        where.append("Timestamp < $until")
        params["until"] = until
    if min_duration is not None:
        where.append("Duration >= $min_d")
        params["min_d"] = min_duration
    if max_duration is not None:
        where.append("Duration <= $max_d")
        params["max_d"] = max_duration
    if errors_only:
        where.append(is_error())
    for i, (key, value) in enumerate(sorted(attributes.items())):
        # A tag matches a span attribute or a resource attribute, as Jaeger's tag search does.
        where.append(f"(SpanAttributes[$k{i}] = $v{i} OR ResourceAttributes[$k{i}] = $v{i})")
        params[f"k{i}"] = key
        params[f"v{i}"] = value
    sql = f"""
WITH hits AS (
    SELECT DISTINCT TraceId FROM otel_traces WHERE {' AND '.join(where)}
), t AS (
    SELECT t.TraceId, min(t.Timestamp) AS start_ns,
        max(t.Timestamp + t.Duration) - min(t.Timestamp) AS duration_ns,
        count(*) AS spans, count(*) FILTER ({is_error('t')}) AS errors,
        arg_min(t.ServiceName, (t.ParentSpanId <> '', t.Timestamp)) AS root_service,
        arg_min(t.SpanName, (t.ParentSpanId <> '', t.Timestamp)) AS root_operation,
        count(DISTINCT t.ServiceName) AS services
    FROM otel_traces t SEMI JOIN hits USING (TraceId)
    GROUP BY t.TraceId
)
SELECT TraceId, start_ns, duration_ns, spans, errors, root_service, root_operation, services
FROM t ORDER BY start_ns DESC, TraceId LIMIT $limit
"""
    return sql, params
