"""SQL for flow checks: per-trace facts of the traces whose root matches a flow, joined with
the flow's rules, all in the engine.

The spec arrives as two bound lists of structs: `$matchers` (mid, svc, svc_glob, name,
name_glob; mid 0 is the root) and `$rules` (rid, kind, a, b, n, limit_ns; a/b are matcher
ids). Per trace the engine computes, per matcher, how many spans match and when the first
starts, plus the root's duration and the trace's error count; each (trace, rule) pair is then
violated or not.
"""

from __future__ import annotations

from typing import Any

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import is_error, span_filter


def _matches(m: str, s: str) -> str:
    """A span `s` is named by matcher `m` (exact, or GLOB when the text has glob characters)."""
    return (f"({m}.svc IS NULL OR CASE WHEN {m}.svc_glob THEN {s}.ServiceName GLOB {m}.svc"
            f" ELSE {s}.ServiceName = {m}.svc END)"
            f" AND CASE WHEN {m}.name_glob THEN {s}.SpanName GLOB {m}.name"
            f" ELSE {s}.SpanName = {m}.name END")


# {scope} filters the root spans (the window is on the root's start); the whole trace counts.
_FACTS = """
WITH m AS (SELECT unnest($matchers, recursive := true)),
roots AS (
    SELECT r.TraceId, r.Timestamp AS root_start, r.Duration AS root_dur
    FROM otel_traces r JOIN m ON m.mid = 0 AND {root_match}
    WHERE r.ParentSpanId = '' AND {scope}
    QUALIFY row_number() OVER (PARTITION BY r.TraceId ORDER BY r.Timestamp, r.SpanId) = 1
),
spans AS (
    SELECT s.TraceId, s.ServiceName, s.SpanName, s.Timestamp, {error} AS err
    FROM otel_traces s SEMI JOIN roots USING (TraceId)
),
hits AS (
    SELECT s.TraceId, m.mid, count(*) AS n, min(s.Timestamp) AS first_start
    FROM spans s JOIN m ON {span_match}
    GROUP BY ALL
),
t AS (
    SELECT roots.*, coalesce(e.errors, 0) AS errors
    FROM roots LEFT JOIN (
        SELECT TraceId, count(*) FILTER (WHERE err) AS errors FROM spans GROUP BY TraceId
    ) e USING (TraceId)
)
"""

# Order: when `b` occurs, `a` must have started strictly before b's first start (an `a` that
# never happened did not happen before). max_per: count(a) <= n × count(per).
RULES = _FACTS + """,
r AS (SELECT unnest($rules, recursive := true)),
v AS MATERIALIZED (
    SELECT r.rid, t.TraceId, t.root_start,
        CASE r.kind
            WHEN 'must_contain' THEN ha.n IS NULL
            WHEN 'must_not_contain' THEN ha.n IS NOT NULL
            WHEN 'order' THEN hb.n IS NOT NULL
                AND (ha.n IS NULL OR ha.first_start >= hb.first_start)
            WHEN 'max_count' THEN coalesce(ha.n, 0) > r.n
            WHEN 'max_per' THEN coalesce(ha.n, 0) > r.n * coalesce(hb.n, 0)
            WHEN 'max_duration' THEN t.root_dur > r.limit_ns
            WHEN 'no_errors' THEN t.errors > 0
            ELSE false
        END AS violated,
        CASE r.kind
            WHEN 'must_not_contain' THEN ha.n::DOUBLE
            WHEN 'max_count' THEN ha.n::DOUBLE
            WHEN 'max_per' THEN ha.n::DOUBLE / nullif(hb.n, 0)
            WHEN 'max_duration' THEN t.root_dur / 1e6
            WHEN 'no_errors' THEN t.errors::DOUBLE
        END AS observed
    FROM t CROSS JOIN r
    LEFT JOIN hits ha ON ha.TraceId = t.TraceId AND ha.mid = r.a
    LEFT JOIN hits hb ON hb.TraceId = t.TraceId AND hb.mid = r.b
)
SELECT rid, count(*) AS checked, count(*) FILTER (WHERE violated) AS violations,
    list_slice(list(TraceId ORDER BY root_start, TraceId) FILTER (WHERE violated), 1, $examples),
    max(observed) FILTER (WHERE violated) AS worst
FROM v GROUP BY rid
UNION ALL
-- rid -1: traces checked and traces violating any rule
SELECT -1, count(DISTINCT TraceId), count(DISTINCT TraceId) FILTER (WHERE violated),
    []::VARCHAR[], NULL
FROM v
ORDER BY rid
"""

# The order in which a trace first reaches each operation the spec names; most frequent first.
PATHS = _FACTS + """,
p AS (
    SELECT t.TraceId, list(h.mid ORDER BY h.first_start, h.mid) FILTER (WHERE h.mid IS NOT NULL)
        AS path
    FROM t LEFT JOIN hits h USING (TraceId) GROUP BY t.TraceId
)
SELECT path, count(*) AS traces FROM p GROUP BY path ORDER BY traces DESC, path LIMIT $top
"""


def _sql(template: str, scope: Scope) -> tuple[str, dict[str, Any]]:
    where, params = span_filter(scope, "r")
    sql = (template.replace("{root_match}", _matches("m", "r"))
           .replace("{span_match}", _matches("m", "s"))
           .replace("{error}", is_error("s"))
           .replace("{scope}", where))
    return sql, params


def rule_results(con: Any, scope: Scope, matchers: list[dict[str, Any]],
                 rules: list[dict[str, Any]], examples: int) -> list[tuple[Any, ...]]:
    """(rid, traces checked, violations, first example trace ids, worst observed value) per
    rule, and rid -1 for the flow (traces checked, traces violating any rule)."""
    sql, params = _sql(RULES, scope)
    out: list[tuple[Any, ...]] = con.execute(
        sql, {**params, "matchers": matchers, "rules": rules, "examples": examples}).fetchall()
    return out


def paths(con: Any, scope: Scope, matchers: list[dict[str, Any]],
          top: int) -> list[tuple[Any, ...]]:
    """(list of matcher ids in first-start order, traces) for the `top` most frequent orders."""
    sql, params = _sql(PATHS, scope)
    out: list[tuple[Any, ...]] = con.execute(
        sql, {**params, "matchers": matchers, "top": top}).fetchall()
    return out
