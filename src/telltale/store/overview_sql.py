"""SQL for the store overview: what is in the store, per signal and per service."""

from __future__ import annotations

from typing import Any

SERVICES = """
SELECT ServiceName, count(*) AS spans, count(DISTINCT TraceId) AS traces,
    count(*) FILTER (WHERE StatusCode IN ('Error', 'STATUS_CODE_ERROR')) AS errors,
    quantile_cont(Duration, 0.5) AS p50, quantile_cont(Duration, 0.95) AS p95,
    min(Timestamp) AS first_ns, max(Timestamp + Duration) AS last_ns
FROM otel_traces WHERE Timestamp >= $since AND Timestamp < $until
GROUP BY ServiceName ORDER BY spans DESC, ServiceName
"""

SIGNAL_COUNTS = """
SELECT 'spans', count(*) FROM otel_traces
UNION ALL SELECT 'logs', count(*) FROM otel_logs
UNION ALL SELECT 'metric points', (SELECT count(*) FROM otel_metrics_gauge)
    + (SELECT count(*) FROM otel_metrics_sum) + (SELECT count(*) FROM otel_metrics_histogram)
    + (SELECT count(*) FROM otel_metrics_exponential_histogram)
    + (SELECT count(*) FROM otel_metrics_summary)
UNION ALL SELECT 'quarantined', count(*) FROM telltale_quarantine
"""

# Per (service, operation, attribute value): how many times more often spans with that value
# fail than the operation's other spans (lift; comparing like with like, as BubbleUp does).
# Only errors that originate in a span count (no child of it failed): a failure propagating up
# through callers says nothing about the callers' attributes. Keys that restate the failure
# (status codes, error types, outcomes) explain nothing and are left out; so are
# high-cardinality keys.
ERROR_ATTRIBUTES = """
WITH w AS (
    SELECT TraceId, SpanId, ParentSpanId, ServiceName, SpanName, SpanAttributes,
        StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS failed
    FROM otel_traces WHERE Timestamp >= $since AND Timestamp < $until
), failed_parents AS (
    SELECT DISTINCT TraceId, ParentSpanId AS SpanId FROM w WHERE failed AND ParentSpanId <> ''
), s AS (
    SELECT w.*, w.failed AND fp.SpanId IS NULL AS origin
    FROM w LEFT JOIN failed_parents fp USING (TraceId, SpanId)
), e AS (
    SELECT ServiceName, SpanName, unnest(map_entries(SpanAttributes)) AS kv, origin AS err FROM s
), card AS (
    SELECT kv.key AS k FROM e GROUP BY 1 HAVING count(DISTINCT kv.value) <= 50
), op AS (
    SELECT ServiceName, SpanName, count(*) FILTER (WHERE origin) AS errors, count(*) AS spans
    FROM s GROUP BY ALL
), v AS (
    SELECT ServiceName, SpanName, kv.key AS k, kv.value AS val,
        count(*) FILTER (WHERE err) AS errors, count(*) AS spans
    FROM e SEMI JOIN card ON card.k = e.kv.key
    WHERE NOT regexp_matches(kv.key, 'status|error|exception|outcome|result')
    GROUP BY ALL
)
SELECT v.ServiceName, v.SpanName, k, val, v.errors, v.spans
FROM v JOIN op USING (ServiceName, SpanName)
WHERE v.errors >= $min_errors AND op.spans > v.spans
-- Relative lift (add-one smoothed): "fails 10x as often" beats "fails 4 points more often".
ORDER BY ((v.errors + 1)::DOUBLE / (v.spans + 2))
    / ((op.errors - v.errors + 1)::DOUBLE / (op.spans - v.spans + 2)) DESC, v.errors DESC,
    1, 2, 3, 4
LIMIT $limit
"""


# Spans whose end never arrived (the events decoder marks them `telltale.open`): stuck work.
OPEN_SPANS = """
SELECT ServiceName, SpanName, TraceId, SpanId, Timestamp, SpanAttributes
FROM otel_traces
WHERE SpanAttributes['telltale.open'] = 'true' AND Timestamp >= $since AND Timestamp < $until
ORDER BY Timestamp, TraceId, SpanId LIMIT $limit
"""


def open_spans(con: Any, since: int, until: int, limit: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = con.execute(
        OPEN_SPANS, {"since": since, "until": until, "limit": limit}).fetchall()
    return rows


def services(con: Any, since: int, until: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = con.execute(SERVICES, {"since": since, "until": until}).fetchall()
    return rows


def signal_counts(con: Any) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = con.execute(SIGNAL_COUNTS).fetchall()
    return rows


def error_attributes(con: Any, since: int, until: int, min_errors: int,
                     limit: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = con.execute(
        ERROR_ATTRIBUTES,
        {"since": since, "until": until, "min_errors": min_errors, "limit": limit}).fetchall()
    return rows
