"""SQL linking log records to the spans they were written in.

A record carrying a trace id attaches to a span of that trace: the span its SpanId names when
that span is stored, else the innermost span (shortest, then lowest id) of the record's own
service whose [start, end] covers the record's time. `attached(logs)` is that rule as a
subquery over any selection of log rows, shared by the trace view, the link summary and the
error counting of compare and root cause (`ERROR_SPANS`), so they all agree on what a log's
span is.
"""

from __future__ import annotations

from typing import Any

import duckdb

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import span_filter

# What counts as an error log: OpenTelemetry ERROR and FATAL severities (17+), or the words
# when a source set only the text.
IS_ERROR_LOG = ("(SeverityNumber >= 17 OR upper(coalesce(SeverityText, '')) IN "
                "('ERROR', 'FATAL', 'CRITICAL'))")


def attached(logs: str) -> str:
    """Subquery (k, TraceId, SpanId, how) over `logs`, a SELECT of log rows with a unique key
    `k` and Timestamp, TraceId, SpanId, ServiceName; `how` is 'span_id' or 'time'. Records
    whose trace has no stored span that fits are absent."""
    return f"""(
    WITH ll AS MATERIALIZED ({logs}),
    direct AS (
        SELECT k, TraceId, SpanId FROM ll
        WHERE SpanId <> '' AND EXISTS (SELECT 1 FROM otel_traces t
                                       WHERE t.TraceId = ll.TraceId AND t.SpanId = ll.SpanId)
    ), cover AS (
        SELECT ll.k, ll.TraceId, first(t.SpanId ORDER BY t.Duration, t.SpanId) AS SpanId
        FROM ll JOIN otel_traces t ON t.TraceId = ll.TraceId AND t.ServiceName = ll.ServiceName
            AND ll.Timestamp BETWEEN t.Timestamp AND t.Timestamp + t.Duration
        WHERE ll.k NOT IN (SELECT k FROM direct)
        GROUP BY ll.k, ll.TraceId
    )
    SELECT k, TraceId, SpanId, 'span_id' AS how FROM direct
    UNION ALL SELECT k, TraceId, SpanId, 'time' FROM cover
)"""


# Per (trace, span): the error logs attached to it. Used as `{ERROR_SPANS}` by compare and root
# cause: a span with an attached error log is failing even when its status does not say so.
ERROR_SPANS = "(SELECT TraceId, SpanId, count(*) AS n FROM " + attached(
    f"SELECT row_number() OVER () AS k, Timestamp, TraceId, SpanId, ServiceName FROM otel_logs "
    f"WHERE TraceId <> '' AND {IS_ERROR_LOG}") + " GROUP BY ALL)"


def has_error_log(alias: str) -> str:
    """SQL: span `alias` has an attached error log."""
    return (f"EXISTS (SELECT 1 FROM {ERROR_SPANS} el "
            f"WHERE el.TraceId = {alias}.TraceId AND el.SpanId = {alias}.SpanId)")


_TRACE_LOGS = """
WITH l AS MATERIALIZED (
    SELECT row_number() OVER (ORDER BY Timestamp, SpanId, Body, ServiceName) AS k, *
    FROM otel_logs WHERE TraceId = $trace
)
SELECT l.Timestamp, l.SeverityText, l.SeverityNumber, l.ServiceName, l.Body, l.SpanId,
    a.SpanId, a.how, l.LogAttributes
FROM l LEFT JOIN {attached} a USING (k)
ORDER BY l.k
"""


def trace_logs(con: duckdb.DuckDBPyConnection, trace_id: str) -> list[tuple[Any, ...]]:
    """(time, severity text, number, service, body, own span id, attached span id or None,
    how, attributes) of one trace's logs, in time order."""
    sql = _TRACE_LOGS.format(attached=attached(
        "SELECT k, Timestamp, TraceId, SpanId, ServiceName FROM l"))
    return con.execute(sql, {"trace": trace_id.lower()}).fetchall()


_QUALITY = """
WITH l AS MATERIALIZED (
    SELECT row_number() OVER () AS k, Timestamp, TraceId, SpanId, ServiceName
    FROM otel_logs WHERE {where}
), traces AS (
    SELECT DISTINCT TraceId FROM otel_traces
    WHERE TraceId IN (SELECT TraceId FROM l WHERE TraceId <> '')
), a AS {attached}
SELECT l.ServiceName, count(*) AS logs,
    count(*) FILTER (WHERE l.TraceId <> '') AS with_trace,
    count(*) FILTER (WHERE l.SpanId <> '') AS with_span,
    count(*) FILTER (WHERE t.TraceId IS NOT NULL) AS trace_stored,
    count(*) FILTER (WHERE a.how = 'span_id') AS by_span_id,
    count(*) FILTER (WHERE a.how = 'time') AS by_time
FROM l LEFT JOIN traces t ON t.TraceId = l.TraceId LEFT JOIN a USING (k)
GROUP BY l.ServiceName ORDER BY l.ServiceName
"""


def link_quality(con: duckdb.DuckDBPyConnection, scope: Scope) -> list[tuple[Any, ...]]:
    """Per service: (service, logs, with a trace id, with a span id, whose trace is stored,
    attached by span id, attached by time)."""
    where, params = span_filter(Scope(scope.since, scope.until, scope.services))
    sql = _QUALITY.format(where=where, attached=attached(
        "SELECT k, Timestamp, TraceId, SpanId, ServiceName FROM l WHERE TraceId <> ''"))
    return con.execute(sql, params).fetchall()
