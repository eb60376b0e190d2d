"""SQL for root-cause ranking: per operation, how an incident window differs from a baseline.

Both windows are read in one pass: `inc` / `bas` mark which window a span belongs to (bound
filters from `scope_sql.span_filter`, prefixes `inc` / `bas`). Spans stored twice (overlapping
exports) count once. For every span the engine derives:
- its self time: duration minus its children's (what the service itself spent);
- its call set: the distinct (service, operation) pairs it called, as one text key;
- whether it is an *origin* error: failed while none of its children failed (a failure that
  propagated up through callers says nothing about the callers). With `log_errors`, a span also
  failed when an error log is attached to it (log_links_sql), even if its status says nothing;
  `log_failed` marks those whose status alone would not have.
"""

from __future__ import annotations

from typing import Any

import duckdb

from telltale.analyses.scope import Scope
from telltale.store.log_links_sql import ERROR_SPANS
from telltale.store.scope_sql import is_error, span_filter

_SPANS = """
WITH s AS (
    SELECT TraceId, SpanId, ParentSpanId, ServiceName, SpanName, Duration, StatusMessage,
        {failed} OR {log_failed} AS failed, {log_failed} AND NOT {failed} AS log_failed,
        ({inc}) AS inc, ({bas}) AS bas
    FROM otel_traces {log_join} WHERE ({inc}) OR ({bas})
    QUALIFY row_number() OVER (PARTITION BY TraceId, SpanId ORDER BY Timestamp) = 1
), kids AS (
    SELECT TraceId, ParentSpanId AS SpanId, sum(Duration) AS kid_ns, bool_or(failed) AS kid_failed,
        array_to_string(list_sort(list_distinct(list(ServiceName || ' ▸ ' || SpanName))), ' | ')
            AS calls
    FROM s WHERE ParentSpanId <> '' GROUP BY TraceId, ParentSpanId
), j AS (
    SELECT s.*, greatest(s.Duration - coalesce(k.kid_ns, 0), 0) AS self_ns,
        coalesce(k.calls, '') AS calls, s.failed AND NOT coalesce(k.kid_failed, false) AS origin
    FROM s LEFT JOIN kids k USING (TraceId, SpanId)
)
"""

# Per (service, operation): counts, median duration and self time, origin errors per window,
# and the total variation distance between the windows' call-set distributions (0: the
# operation calls the same things in the same proportions; 1: nothing in common).
_OPERATIONS = """
, calls AS (
    SELECT ServiceName, SpanName, calls, count(*) FILTER (WHERE inc) AS ni,
        count(*) FILTER (WHERE bas) AS nb
    FROM j GROUP BY ALL
), shares AS (
    SELECT ServiceName, SpanName, ni / greatest(sum(ni) OVER w, 1) AS pi,
        nb / greatest(sum(nb) OVER w, 1) AS pb
    FROM calls WINDOW w AS (PARTITION BY ServiceName, SpanName)
), tvd AS (
    SELECT ServiceName, SpanName, 0.5 * sum(abs(pi - pb)) AS tvd FROM shares GROUP BY ALL
), lb AS (
    SELECT ServiceName, SpanName, quantile_cont(ln(self_ns + $floor), 0.5) AS mb
    FROM j WHERE bas GROUP BY ALL
), spread AS (
    SELECT ServiceName, SpanName, quantile_cont(abs(ln(self_ns + $floor) - mb), 0.5) AS self_mad
    FROM j JOIN lb USING (ServiceName, SpanName) WHERE bas GROUP BY ALL
)
SELECT j.ServiceName, j.SpanName,
    count(*) FILTER (WHERE inc) AS n_inc, count(*) FILTER (WHERE bas) AS n_bas,
    quantile_cont(Duration, 0.5) FILTER (WHERE inc) AS dur_inc,
    quantile_cont(Duration, 0.5) FILTER (WHERE bas) AS dur_bas,
    quantile_cont(self_ns, 0.5) FILTER (WHERE inc) AS self_inc,
    quantile_cont(self_ns, 0.5) FILTER (WHERE bas) AS self_bas,
    count(*) FILTER (WHERE inc AND origin) AS err_inc,
    count(*) FILTER (WHERE bas AND origin) AS err_bas,
    count(*) FILTER (WHERE inc AND origin AND log_failed) AS log_err_inc,
    count(*) FILTER (WHERE bas AND origin AND log_failed) AS log_err_bas,
    any_value(tvd.tvd) AS tvd, any_value(spread.self_mad) AS self_mad
FROM j JOIN tvd USING (ServiceName, SpanName) LEFT JOIN spread USING (ServiceName, SpanName)
GROUP BY j.ServiceName, j.SpanName ORDER BY 1, 2
"""

# Which services call which (in the incident): a caller's change may be its callee's doing.
_CALLEES = """
SELECT DISTINCT p.ServiceName, c.ServiceName
FROM j c JOIN j p ON p.TraceId = c.TraceId AND p.SpanId = c.ParentSpanId
WHERE c.inc AND p.ServiceName <> c.ServiceName ORDER BY 1, 2
"""

# Error messages a service's own failures carry in the incident and never in the baseline.
_NEW_ERRORS = """
SELECT a.ServiceName, a.StatusMessage, count(*) AS n
FROM j a ANTI JOIN (SELECT DISTINCT ServiceName, StatusMessage FROM j WHERE bas AND origin) b
    USING (ServiceName, StatusMessage)
WHERE a.inc AND a.origin AND coalesce(a.StatusMessage, '') <> ''
GROUP BY ALL ORDER BY a.ServiceName, n DESC, a.StatusMessage
"""

# Logs per service and window: all, error-level, and error templates (numbers and hex ids
# masked) new in the incident.
_LOGS = """
WITH l AS (
    SELECT ServiceName, ({inc}) AS inc, ({bas}) AS bas,
        (SeverityNumber >= 17 OR upper(SeverityText) IN ('ERROR', 'FATAL', 'CRITICAL'))
            AS err,
        regexp_replace(coalesce(Body, ''), '[0-9a-fA-F]{{8,}}|[0-9]+', '#', 'g') AS tmpl
    FROM otel_logs WHERE ({inc}) OR ({bas})
), base_err AS (SELECT DISTINCT ServiceName, tmpl FROM l WHERE bas AND err)
SELECT l.ServiceName, count(*) FILTER (WHERE inc), count(*) FILTER (WHERE bas),
    count(*) FILTER (WHERE inc AND err), count(*) FILTER (WHERE bas AND err),
    count(DISTINCT l.tmpl) FILTER (WHERE inc AND err AND b.tmpl IS NULL)
FROM l LEFT JOIN base_err b ON b.ServiceName = l.ServiceName AND b.tmpl = l.tmpl
GROUP BY l.ServiceName ORDER BY 1
"""

# Per (service, gauge): the history's median and median absolute deviation, the largest
# deviation any history point had (how noisy the series is), and the incident's median.
# Several pods of one service are averaged per timestamp.
_METRICS = """
WITH m AS (
    SELECT ServiceName, MetricName, TimeUnix, avg(Value) AS v
    FROM otel_metrics_gauge
    WHERE ServiceName <> '' AND NOT isnan(Value) AND TimeUnix >= $history_since
        AND TimeUnix < $until AND (len($services) = 0 OR list_contains($services, ServiceName))
    GROUP BY ALL
), b AS (
    SELECT ServiceName, MetricName, quantile_cont(v, 0.5) AS med, count(*) AS n
    FROM m WHERE TimeUnix < $since GROUP BY ALL
), d AS (
    SELECT m.ServiceName, m.MetricName, m.TimeUnix >= $since AS inc, v, abs(v - b.med) AS dev,
        b.med, b.n
    FROM m JOIN b USING (ServiceName, MetricName)
)
SELECT ServiceName, MetricName, any_value(med), quantile_cont(v, 0.5) FILTER (WHERE inc),
    quantile_cont(dev, 0.5) FILTER (WHERE NOT inc), max(dev) FILTER (WHERE NOT inc),
    any_value(n), count(*) FILTER (WHERE inc)
FROM d GROUP BY ALL
HAVING count(*) FILTER (WHERE inc) > 0 AND any_value(n) >= $min_points
ORDER BY 1, 2
"""

_RANGE = """
SELECT min(Timestamp), max(Timestamp) FROM otel_traces WHERE list_contains($batches, BatchId)
"""


def _span_sql(incident: Scope, baseline: Scope, tail: str,
              log_errors: bool = False) -> tuple[str, dict[str, Any]]:
    inc, p1 = span_filter(incident, prefix="inc")
    bas, p2 = span_filter(baseline, prefix="bas")
    log_join = f"LEFT JOIN {ERROR_SPANS} el USING (TraceId, SpanId)" if log_errors else ""
    log_failed = "(coalesce(el.n, 0) > 0)" if log_errors else "false"
    return _SPANS.format(failed=is_error(), log_failed=log_failed, log_join=log_join, inc=inc,
                         bas=bas) + tail, {**p1, **p2}


def operations(con: duckdb.DuckDBPyConnection, incident: Scope, baseline: Scope,
               floor_ns: float, log_errors: bool = False) -> list[tuple[Any, ...]]:
    """Per operation: service, operation, spans, median durations and self times, origin
    errors, origin errors only an attached error log shows (per window), tvd, self-time MAD."""
    sql, params = _span_sql(incident, baseline, _OPERATIONS, log_errors)
    return con.execute(sql, {**params, "floor": floor_ns}).fetchall()


def callees(con: duckdb.DuckDBPyConnection, incident: Scope,
            baseline: Scope) -> list[tuple[str, str]]:
    sql, params = _span_sql(incident, baseline, _CALLEES)
    return [(str(a), str(b)) for a, b in con.execute(sql, params).fetchall()]


def new_errors(con: duckdb.DuckDBPyConnection, incident: Scope, baseline: Scope,
               log_errors: bool = False) -> list[tuple[str, str, int]]:
    sql, params = _span_sql(incident, baseline, _NEW_ERRORS, log_errors)
    return [(str(s), str(m), int(n)) for s, m, n in con.execute(sql, params).fetchall()]


def logs(con: duckdb.DuckDBPyConnection, incident: Scope, baseline: Scope) -> list[tuple[Any, ...]]:
    # Logs have no operation: only the window and the services filter apply.
    inc, p1 = span_filter(Scope(incident.since, incident.until, incident.services), prefix="inc")
    bas, p2 = span_filter(Scope(baseline.since, baseline.until, baseline.services), prefix="bas")
    return con.execute(_LOGS.format(inc=inc, bas=bas), {**p1, **p2}).fetchall()


def metrics(con: duckdb.DuckDBPyConnection, since: int, until: int, history_since: int,
            services: tuple[str, ...], min_points: int) -> list[tuple[Any, ...]]:
    return con.execute(_METRICS, {"since": since, "until": until, "history_since": history_since,
                                  "services": list(services), "min_points": min_points}).fetchall()


def batch_range(con: duckdb.DuckDBPyConnection, batches: list[int]) -> tuple[int | None, int | None]:
    """First and last span start of these ingest batches (a baseline's own time range)."""
    lo, hi = con.execute(_RANGE, {"batches": batches}).fetchall()[0]
    return (int(lo) if lo is not None else None, int(hi) if hi is not None else None)
