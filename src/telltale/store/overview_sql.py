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

# Error share per (service, attribute value) for attributes present on erroring spans: the
# attribute value most tied to errors. Keys are bounded to low-cardinality attributes.
ERROR_ATTRIBUTES = """
WITH e AS (
    SELECT ServiceName, unnest(map_entries(SpanAttributes)) AS kv,
        StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS err
    FROM otel_traces WHERE Timestamp >= $since AND Timestamp < $until
), card AS (
    SELECT kv.key AS k FROM e GROUP BY 1 HAVING count(DISTINCT kv.value) <= 50
)
SELECT ServiceName, kv.key, kv.value, count(*) FILTER (WHERE err) AS errors, count(*) AS spans
FROM e SEMI JOIN card ON card.k = e.kv.key
GROUP BY ALL HAVING count(*) FILTER (WHERE err) >= $min_errors
ORDER BY errors::DOUBLE / spans DESC, errors DESC, 1, 2, 3 LIMIT $limit
"""


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
