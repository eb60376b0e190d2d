"""SQL for the quality report: per-span flags and trace completeness, computed in the engine.

A span's flags: orphan (parent id not in its trace), duplicate ((trace, span) id stored more
than once), clock skew (starts before / ends after its parent beyond a tolerance). A trace is
complete and consistent when it has a root and none of its spans is flagged.
"""

from __future__ import annotations

from typing import Any

# $since/$until bound the traces considered (any span in the window brings its whole trace);
# $skew_ns is the tolerance; $bucket_ns the bucket width. {group} is a fixed column expression
# chosen by the caller from an allow-list, never user text.
SPAN_FLAGS = """
WITH win AS (
    SELECT DISTINCT TraceId FROM otel_traces WHERE Timestamp >= $since AND Timestamp < $until
), s AS (
    SELECT t.TraceId, t.SpanId, t.ParentSpanId, t.Timestamp, t.Duration, t.ServiceName, t.BatchId
    FROM otel_traces t SEMI JOIN win USING (TraceId)
), ids AS (
    SELECT TraceId, SpanId, count(*) AS n, min(Timestamp) AS ts, max(Timestamp + Duration) AS te
    FROM s GROUP BY ALL
), f AS (
    SELECT s.*,
        s.ParentSpanId <> '' AND p.SpanId IS NULL AS orphan,
        i.n > 1 AS dup,
        p.SpanId IS NOT NULL AND (s.Timestamp < p.ts - $skew_ns
            OR s.Timestamp + s.Duration > p.te + $skew_ns) AS skew
    FROM s
    JOIN ids i ON i.TraceId = s.TraceId AND i.SpanId = s.SpanId
    LEFT JOIN ids p ON p.TraceId = s.TraceId AND p.SpanId = s.ParentSpanId
), tr AS (
    SELECT TraceId, bool_or(ParentSpanId = '') AS has_root, bool_or(orphan OR dup OR skew) AS bad
    FROM f GROUP BY TraceId
)
SELECT {group} AS key, (f.Timestamp // $bucket_ns) * $bucket_ns AS bucket,
    count(*) AS stored,
    count(*) FILTER (WHERE orphan) AS orphan,
    count(*) FILTER (WHERE dup) AS duplicate,
    count(*) FILTER (WHERE skew) AS clock_skew,
    count(*) FILTER (WHERE NOT has_root) AS no_root,
    count(*) FILTER (WHERE has_root AND NOT bad) AS good
FROM f JOIN tr USING (TraceId) JOIN telltale_ingest_batches b USING (BatchId)
GROUP BY ALL
"""

SPAN_GROUPS = {"source": "b.Source", "service": "f.ServiceName"}

# Quarantined trace records: bucketed by their own time when known (NULL bucket otherwise).
QUARANTINED = """
SELECT {group} AS key, (q.Timestamp // $bucket_ns) * $bucket_ns AS bucket, q.Reason, count(*)
FROM telltale_quarantine q JOIN telltale_ingest_batches b USING (BatchId)
WHERE q.Signal = 'traces' AND (q.Timestamp IS NULL OR (q.Timestamp >= $since AND q.Timestamp < $until))
GROUP BY ALL
"""

QUARANTINE_GROUPS = {
    "source": "b.Source",
    "service": "coalesce(CASE WHEN json_valid(q.Raw) THEN json_extract_string(q.Raw, '$.ServiceName') END,"
               " '(unknown)')",
}

# Logs and metric points per source/service: stored vs quarantined (no trace structure).
OTHER_SIGNALS = """
SELECT 'logs' AS signal, {group} AS key, count(*) FROM otel_logs x
JOIN telltale_ingest_batches b USING (BatchId)
WHERE x.Timestamp >= $since AND x.Timestamp < $until GROUP BY ALL
UNION ALL
SELECT 'metrics', {group}, count(*) FROM (
    SELECT BatchId, ServiceName, TimeUnix FROM otel_metrics_gauge
    UNION ALL SELECT BatchId, ServiceName, TimeUnix FROM otel_metrics_sum
    UNION ALL SELECT BatchId, ServiceName, TimeUnix FROM otel_metrics_histogram
    UNION ALL SELECT BatchId, ServiceName, TimeUnix FROM otel_metrics_exponential_histogram
    UNION ALL SELECT BatchId, ServiceName, TimeUnix FROM otel_metrics_summary
) x JOIN telltale_ingest_batches b USING (BatchId)
WHERE x.TimeUnix >= $since AND x.TimeUnix < $until GROUP BY ALL
"""

OTHER_GROUPS = {"source": "b.Source", "service": "x.ServiceName"}

QUARANTINED_OTHER = """
SELECT q.Signal, {group} AS key, count(*)
FROM telltale_quarantine q JOIN telltale_ingest_batches b USING (BatchId)
WHERE q.Signal <> 'traces' AND (q.Timestamp IS NULL OR (q.Timestamp >= $since AND q.Timestamp < $until))
GROUP BY ALL
"""

# The data's own range: every signal, and quarantined records that carry a usable time, so
# a store holding only logs, or only rejected spans, still reports them.
TIME_RANGE = """
SELECT min(lo), max(hi) FROM (
    SELECT min(Timestamp) AS lo, max(Timestamp + Duration) AS hi FROM otel_traces
    UNION ALL SELECT min(Timestamp), max(Timestamp) FROM telltale_quarantine
    UNION ALL SELECT min(Timestamp), max(Timestamp) FROM otel_logs
    UNION ALL SELECT min(TimeUnix), max(TimeUnix) FROM otel_metrics_gauge
    UNION ALL SELECT min(TimeUnix), max(TimeUnix) FROM otel_metrics_sum
    UNION ALL SELECT min(TimeUnix), max(TimeUnix) FROM otel_metrics_histogram
    UNION ALL SELECT min(TimeUnix), max(TimeUnix) FROM otel_metrics_exponential_histogram
    UNION ALL SELECT min(TimeUnix), max(TimeUnix) FROM otel_metrics_summary
)
"""


def _grouped(sql: str, groups: dict[str, str], by: str) -> str:
    if by not in groups:
        raise ValueError(f"cannot group quality by {by!r}; choose one of {sorted(groups)}")
    return sql.replace("{group}", groups[by])


def fetch(con: Any, by: str, since: int, until: int, bucket_ns: int,
          skew_ns: int) -> dict[str, list[tuple[Any, ...]]]:
    """All rows the quality report needs, keyed by part."""
    window = {"since": since, "until": until}
    return {
        "spans": con.execute(_grouped(SPAN_FLAGS, SPAN_GROUPS, by),
                             {**window, "bucket_ns": bucket_ns, "skew_ns": skew_ns}).fetchall(),
        "quarantined": con.execute(_grouped(QUARANTINED, QUARANTINE_GROUPS, by),
                                   {**window, "bucket_ns": bucket_ns}).fetchall(),
        "other": con.execute(_grouped(OTHER_SIGNALS, OTHER_GROUPS, by), window).fetchall(),
        "other_quarantined": con.execute(
            _grouped(QUARANTINED_OTHER, QUARANTINE_GROUPS, by),
            window).fetchall(),
    }


def time_range(con: Any) -> tuple[int | None, int | None]:
    lo, hi = con.execute(TIME_RANGE).fetchall()[0]
    return lo, hi
