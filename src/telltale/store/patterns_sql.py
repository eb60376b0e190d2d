"""SQL for structural patterns: trace shapes, N+1 calls and retry loops.

A trace's *shape* is a canonical signature built bottom-up, one depth level per step of a
recursive CTE: a span's signature is its `service: operation` label followed by its children's
signatures, sorted, identical ones collapsed as `sig×n`. Two traces have the same signature
exactly when their trees are the same up to sibling order. Grouping uses a 64-bit hash built
the same way (label, sorted child hashes): strings of whole traces are costly to sort and
concatenate at every level, so the readable signature is spelled out for one example trace
per shape only, and the shape id is the md5 of that text. Only spans reachable from the root
take part (orphans are a data-quality matter, reported by `quality`).
"""

from __future__ import annotations

from typing import Any

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import is_error, span_filter
from telltale.store.trace_sql import SPANS, TREE, Selection, roots_cte

# The recursive step's working table holds one depth level: the level above is built from it
# (the deepest level first; a parent's children are always exactly one level down).
_LEVELS = """
{name}(g, TraceId, SpanId, ParentSpanId, depth, sig) AS (
    SELECT g, TraceId, SpanId, ParentSpanId, depth, {leaf} FROM {src}
    WHERE depth = (SELECT max(depth) FROM {src})
    UNION ALL
    SELECT p.g, p.TraceId, p.SpanId, p.ParentSpanId, p.depth,
        CASE WHEN k.kids IS NULL THEN {leaf_p} ELSE {node} END
    FROM {src} p LEFT JOIN (
        SELECT g, TraceId, ParentSpanId, {kids} AS kids
        FROM {inner} GROUP BY ALL
    ) k ON k.g = p.g AND k.TraceId = p.TraceId AND k.ParentSpanId = p.SpanId
    WHERE p.depth = (SELECT max(depth) FROM {name}) - 1
)"""

_HASHED = _LEVELS.format(
    name="hashed", src="d", leaf="hash(label)", leaf_p="hash(p.label)",
    node="hash(p.label, k.kids)", kids="list_sort(list(sig))", inner="hashed")

_SPELLED = _LEVELS.format(
    name="spelled", src="ex", leaf="label", leaf_p="p.label",
    node="p.label || '(' || k.kids || ')'",
    kids="string_agg(CASE WHEN n > 1 THEN sig || '×' || n ELSE sig END, ', ' ORDER BY sig)",
    inner="(SELECT g, TraceId, ParentSpanId, sig, count(*) AS n FROM spelled GROUP BY ALL)")

SIGNATURES = f"""
, d AS MATERIALIZED (
    SELECT t.g, t.TraceId, t.SpanId, s.ParentSpanId, t.depth,
        s.ServiceName || ': ' || s.SpanName AS label
    FROM tree t JOIN s USING (g, TraceId, SpanId)
),
{_HASHED},
shaped AS (
    SELECT r.g, r.TraceId, r.RootId, r.RootService, r.RootOp, r.RootDuration, h.sig AS h,
        n.nodes
    FROM roots r
    JOIN hashed h ON h.g = r.g AND h.TraceId = r.TraceId AND h.SpanId = r.RootId
    JOIN (SELECT g, TraceId, count(*) AS nodes FROM d GROUP BY ALL) n
        ON n.g = r.g AND n.TraceId = r.TraceId
),
grouped AS (
    SELECT g, RootService, RootOp, h, count(*) AS traces,
        count(*) / sum(count(*)) OVER (PARTITION BY g, RootService, RootOp) AS share,
        quantile_cont(RootDuration, 0.5) AS p50, quantile_cont(RootDuration, 0.95) AS p95,
        quantile_cont(RootDuration, 0.99) AS p99, any_value(nodes) AS nodes,
        min(TraceId) AS example
    FROM shaped GROUP BY g, RootService, RootOp, h
),
ex AS MATERIALIZED (
    SELECT d.* FROM d SEMI JOIN grouped e ON e.g = d.g AND e.example = d.TraceId
),
{_SPELLED},
shapes AS (
    SELECT e.*, left(md5(sp.sig), 12) AS shape, sp.sig
    FROM grouped e
    JOIN shaped r ON r.g = e.g AND r.TraceId = e.example
    JOIN spelled sp ON sp.g = e.g AND sp.TraceId = e.example AND sp.SpanId = r.RootId
)"""

SHAPE_COLUMNS = "RootService, RootOp, shape, traces, share, p50, p95, p99, nodes, example, sig"

SHAPES = f"""
SELECT {SHAPE_COLUMNS} FROM shapes
ORDER BY traces DESC, RootService, RootOp, shape LIMIT $limit
"""

# Shapes of the window ('now') that no trace of the baseline ('base') has, for the same root.
NEW_SHAPES = f"""
SELECT {SHAPE_COLUMNS} FROM shapes n
WHERE g = 'now' AND NOT EXISTS (
    SELECT 1 FROM grouped b WHERE b.g = 'base' AND b.RootService = n.RootService
        AND b.RootOp = n.RootOp AND b.h = n.h)
ORDER BY traces DESC, RootService, RootOp, shape LIMIT $limit
"""


def _shapes_query(selections: list[Selection], tail: str) -> tuple[str, dict[str, Any]]:
    roots, params = roots_cte(selections)
    return "WITH RECURSIVE " + ",\n".join([roots, SPANS, TREE]) + SIGNATURES + tail, params


def shapes(con: Any, selection: Selection, limit: int) -> list[tuple[Any, ...]]:
    sql, params = _shapes_query([selection], SHAPES)
    rows: list[tuple[Any, ...]] = con.execute(sql, {**params, "limit": limit}).fetchall()
    return rows


def new_shapes(con: Any, now: Selection, base: Selection, limit: int) -> list[tuple[Any, ...]]:
    sql, params = _shapes_query([now, base], NEW_SHAPES)
    rows: list[tuple[Any, ...]] = con.execute(sql, {**params, "limit": limit}).fetchall()
    return rows


def span_range(con: Any) -> tuple[int | None, int | None]:
    row = con.execute("SELECT min(Timestamp), max(Timestamp) FROM otel_traces").fetchone()
    return (None, None) if row is None else (row[0], row[1])


def _kinds_filter(kinds: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """Span kinds in both spellings (`Client`, `SPAN_KIND_CLIENT`); empty: every kind."""
    if not kinds:
        return "true", {}
    spelled = [*kinds, *(f"SPAN_KIND_{k.upper()}" for k in kinds)]
    return "list_contains($kinds, c.SpanKind)", {"kinds": spelled}


# N+1: one parent span with at least $min_repeats children of the same service and operation.
N_PLUS_ONE = """
WITH rep AS (
    SELECT c.TraceId, c.ParentSpanId, c.ServiceName, c.SpanName, count(*) AS n,
        sum(c.Duration) AS total
    FROM otel_traces c
    WHERE c.ParentSpanId <> '' AND {scope} AND {kinds}
    GROUP BY ALL HAVING count(*) >= $min_repeats
),
parent AS (
    SELECT p.TraceId, p.SpanId, any_value(p.ServiceName) AS service,
        any_value(p.SpanName) AS op, any_value(p.Duration) AS dur
    FROM otel_traces p SEMI JOIN rep ON rep.TraceId = p.TraceId AND rep.ParentSpanId = p.SpanId
    GROUP BY ALL
)
SELECT coalesce(p.service, '') AS parent_service, coalesce(p.op, '') AS parent_op,
    r.ServiceName, r.SpanName, count(*) AS parents, count(DISTINCT r.TraceId) AS traces,
    max(r.n), quantile_cont(r.n, 0.5), avg(r.n), avg(r.total),
    avg(r.total / nullif(p.dur, 0)) AS share_of_parent,
    list(r.TraceId ORDER BY r.n DESC, r.TraceId)[1:$examples] AS examples
FROM rep r LEFT JOIN parent p ON p.TraceId = r.TraceId AND p.SpanId = r.ParentSpanId
GROUP BY ALL
ORDER BY traces DESC, parents DESC, parent_service, parent_op, r.ServiceName, r.SpanName
"""


def n_plus_one(con: Any, scope: Scope, kinds: tuple[str, ...], min_repeats: int,
               examples: int) -> list[tuple[Any, ...]]:
    where, params = span_filter(scope, "c")
    kind_sql, kind_params = _kinds_filter(kinds)
    sql = N_PLUS_ONE.replace("{scope}", where).replace("{kinds}", kind_sql)
    rows: list[tuple[Any, ...]] = con.execute(sql, {
        **params, **kind_params, "min_repeats": min_repeats, "examples": examples}).fetchall()
    return rows


# Retry loops: siblings in start order; a run continues while the next sibling is the same
# operation, the one before it failed, and it starts once that one has ended (parallel calls
# that share a name, such as two "GET"s to different services, are not retries). Runs of two
# or more are retries: every attempt but the last failed; the last recovered or gave up.
RETRIES = f"""
WITH c AS (
    SELECT TraceId, SpanId, ParentSpanId, ServiceName, SpanName, Timestamp,
        Timestamp + Duration AS ends, {is_error('c')} AS err
    FROM otel_traces c WHERE c.ParentSpanId <> '' AND {{scope}}
),
o AS (
    SELECT *,
        CASE WHEN lag(ServiceName) OVER w = ServiceName AND lag(SpanName) OVER w = SpanName
                  AND lag(err) OVER w AND lag(ends) OVER w <= Timestamp
             THEN 0 ELSE 1 END AS starts
    FROM c WINDOW w AS (PARTITION BY TraceId, ParentSpanId ORDER BY Timestamp, SpanId)
),
runs AS (
    SELECT *, sum(starts) OVER (PARTITION BY TraceId, ParentSpanId ORDER BY Timestamp, SpanId
                                ROWS UNBOUNDED PRECEDING) AS run
    FROM o
),
loops AS (
    SELECT TraceId, ParentSpanId, run, any_value(ServiceName) AS service,
        any_value(SpanName) AS op, count(*) AS attempts,
        NOT arg_max(err, Timestamp) AS recovered
    FROM runs GROUP BY TraceId, ParentSpanId, run HAVING count(*) >= 2
),
parent AS (
    SELECT p.TraceId, p.SpanId, any_value(p.ServiceName) AS service,
        any_value(p.SpanName) AS op
    FROM otel_traces p
    SEMI JOIN loops l ON l.TraceId = p.TraceId AND l.ParentSpanId = p.SpanId
    GROUP BY ALL
)
SELECT coalesce(p.service, '') AS parent_service, coalesce(p.op, '') AS parent_op,
    l.service, l.op, count(*) AS loops, count(DISTINCT l.TraceId) AS traces,
    max(l.attempts), avg(l.attempts), count(*) FILTER (WHERE l.recovered),
    count(*) FILTER (WHERE NOT l.recovered),
    list(l.TraceId ORDER BY l.attempts DESC, l.TraceId)[1:$examples] AS examples
FROM loops l LEFT JOIN parent p ON p.TraceId = l.TraceId AND p.SpanId = l.ParentSpanId
GROUP BY ALL
ORDER BY loops DESC, parent_service, parent_op, l.service, l.op
"""


def retries(con: Any, scope: Scope, examples: int) -> list[tuple[Any, ...]]:
    where, params = span_filter(scope, "c")
    rows: list[tuple[Any, ...]] = con.execute(RETRIES.replace("{scope}", where),
                                              {**params, "examples": examples}).fetchall()
    return rows
