"""SQL for the dependency graph: who calls whom, from parent/child spans across services, span
links from queue consumers to producers, and the peers that left no spans of their own.

One pass joins every span in the window (a potential caller) to its callees: entry spans
(Server, Consumer or Unspecified kind) of another service whose parent it is, and consumer spans
that link to it. Edges are classified:
- call: a span's child lives in another service (caller → callee, the callee span's duration);
- messaging: the same through a queue (producer → consumer, by parent or by link);
- database / broker / external: a client or producer span with no callee span, named by its
  attributes (peer.service, service.peer.name, db.system(.name) + db.namespace,
  messaging.system + destination, gen_ai provider, server.address, net.peer.name), measured by
  the client span itself. Producers always also get an edge to their broker.
- unpaired: a client or producer span with no callee and no attribute naming a peer; counted,
  never drawn.
"""

from __future__ import annotations

from typing import Any

from telltale.analyses.scope import Scope
from telltale.store import span_index_sql as ix
from telltale.store.scope_sql import is_error, is_kind, span_filter

QUANTILES = [0.5, 0.95]

_OUTBOUND = f"({is_kind('Client')} OR {is_kind('Producer')})"


# Spans that can be called from another service: entry spans (an Internal or Client span's
# parent is in its own process). Unspecified covers Zipkin / Jaeger data without kinds.
_ENTRY = f"({is_kind('Server')} OR {is_kind('Consumer')} OR {is_kind('Unspecified')})"

# {caller_op}: the operation that made the call. For a client span that is its parent in the
# same service (the handler), when asked for (operation level); the span's own name otherwise.
_CALLER_OP = {
    "service": ("NULL", ""),
    "operation": (
        "CASE WHEN j.outbound THEN coalesce(pp.SpanName, j.SpanName) ELSE j.SpanName END",
        # Keyed by a hash of (trace, span id): this join only names the caller, and one integer
        # key halves its cost; a wrong name needs a 64-bit collision.
        "LEFT JOIN (SELECT hash(TraceId, SpanId) AS k, ServiceName, SpanName FROM otel_traces) pp"
        " ON j.outbound AND pp.k = hash(j.TraceId, j.ParentSpanId)"
        " AND pp.ServiceName = j.ServiceName",
    ),
}
# The same over the span index, whose keys are stored.
_INDEX_CALLER_JOIN = (f"LEFT JOIN (SELECT Key, ServiceName, SpanName FROM {ix.TABLE}) pp"
                      " ON j.outbound AND pp.Key = j.ParentKey AND pp.ServiceName = j.ServiceName")


def _edge_select(peer: str) -> str:
    """One edge row per caller span: its callee's service, or else its peer ('kind|name')."""
    return f"""
    SELECT
        CASE WHEN j.callee IS NULL THEN {peer}
            ELSE CASE WHEN j.messaging THEN 'messaging|' ELSE 'call|' END || j.callee END AS target,
        j.ServiceName AS caller, {{caller_op}} AS caller_op, j.SpanName AS span_op,
        CASE WHEN j.callee IS NOT NULL THEN j.callee_op ELSE j.SpanName END AS target_op,
        CASE WHEN j.callee IS NOT NULL THEN j.callee_ns ELSE j.Duration END AS d,
        CASE WHEN j.callee IS NOT NULL THEN j.callee_err ELSE j.err END AS failed
    FROM j {{caller_join}}"""


# Edges ('kind|target', caller, caller_op, span_op, target_op, d, failed) → the graph.
_GROUPED = f"""
, g AS MATERIALIZED (
    -- materialized: filters on `target` pushed below the aggregate would look peers up twice
    SELECT target, caller, {{group_caller_op}} AS caller_op, {{group_target_op}} AS target_op,
        count(*) AS calls, count(*) FILTER (WHERE failed) AS errors,
        quantile_cont(d, {QUANTILES}) AS q
    FROM e WHERE {{names}}
    GROUP BY ALL
)
SELECT split_part(target, '|', 1) AS kind, caller, caller_op,
    nullif(substr(target, strpos(target, '|') + 1), '') AS callee, target_op, calls, errors, q
FROM g WHERE target IS NOT NULL AND NOT starts_with(target, 'skip|')
ORDER BY ALL
"""

# From the raw spans: the fallback for a store without a complete span index.
# The attribute maps ride along the join so that peers are looked up only for the client spans
# that found no callee. Every map lookup sits behind a CASE on the span kind: a filter pushed
# down to the scan would otherwise evaluate it for every span. {op} and {parent}: span names and
# parent ids, carried only when the level or an --operation filter needs them.
EDGES = f"""
WITH p AS (
    SELECT TraceId, SpanId, {{parent}} AS ParentSpanId, ServiceName, {{op}} AS SpanName, Duration,
        SpanAttributes, {is_error()} AS err, {_OUTBOUND} AS outbound,
        {is_kind('Producer')} AS producer
    FROM otel_traces WHERE {{where}}
), callee AS (
    SELECT TraceId, ParentSpanId AS SpanId, ServiceName, {{op}} AS SpanName, Duration,
        {is_error()} AS err, {is_kind('Consumer')} AS queued, false AS via_link,
        NOT {is_kind('Unspecified')} AS declared
    FROM otel_traces WHERE ParentSpanId <> '' AND {_ENTRY} AND {{callee_where}}
    UNION ALL
    SELECT l.TraceId, l.SpanId, ServiceName, SpanName, Duration, err, consumer, true, true
    FROM (
        SELECT unnest(Links) AS l, TraceId AS own_trace, ParentSpanId, ServiceName,
            {{op}} AS SpanName, Duration, {is_error()} AS err, {is_kind('Consumer')} AS consumer
        FROM otel_traces WHERE len(Links) > 0
    ) WHERE NOT (l.TraceId = own_trace AND l.SpanId = ParentSpanId)
), j AS (
    SELECT p.*, c.ServiceName AS callee, c.SpanName AS callee_op, c.Duration AS callee_ns,
        c.err AS callee_err, c.queued OR p.producer AS messaging,
        CASE WHEN c.ServiceName IS NULL THEN {ix.unpaired_target('p')} END AS peer
    FROM p LEFT JOIN callee c ON c.TraceId = p.TraceId AND c.SpanId = p.SpanId
        -- a client reaching a server of its own service is a self-call; otherwise only calls
        -- across services count
        AND (c.ServiceName <> p.ServiceName OR (p.outbound AND c.declared))
        -- a link is a call only from a queue consumer or to a producer
        AND (NOT c.via_link OR c.queued OR p.producer)
    WHERE c.ServiceName IS NOT NULL OR p.outbound
), e AS (
    -- 'kind|name': the peer expression is referenced once, so it is evaluated once per span
{_edge_select('j.peer')}
    UNION ALL
    -- Every producer span also reaches its broker, consumed or not.
    SELECT CASE WHEN {is_kind('Producer', 'j')} THEN 'broker|' || {ix.broker('j')} END,
        j.ServiceName, {{broker_op}}, j.SpanName, j.SpanName, j.Duration, {is_error('j')}
    FROM otel_traces j {{broker_join}}
    WHERE {{broker_where}} AND {is_kind('Producer', 'j')}
){_GROUPED}"""

# The same graph from the span index (store/span_index_sql.py): integer keys instead of string
# ids, kinds as codes, peers named at ingest. Each clause mirrors its twin in EDGES.
INDEX_EDGES = f"""
WITH p AS (
    SELECT Key, {{parent}} AS ParentKey, ServiceName, {{op}} AS SpanName, Duration, Failed AS err,
        Kind IN ({ix.CLIENT}, {ix.PRODUCER}) AS outbound, Kind = {ix.PRODUCER} AS producer, Peer
    FROM {ix.TABLE} WHERE {{where}}
), callee AS (
    SELECT ParentKey AS Key, ServiceName, {{op}} AS SpanName, Duration, Failed AS err,
        Kind = {ix.CONSUMER} AS queued, false AS via_link, Kind <> {ix.UNSPECIFIED} AS declared
    FROM {ix.TABLE}
    WHERE ParentKey IS NOT NULL AND Kind IN ({ix.SERVER}, {ix.CONSUMER}, {ix.UNSPECIFIED})
        AND {{callee_where}}
    UNION ALL
    SELECT unnest(LinkKeys), ServiceName, {{op}}, Duration, Failed, Kind = {ix.CONSUMER}, true, true
    FROM {ix.TABLE} WHERE LinkKeys IS NOT NULL
), j AS (
    SELECT p.*, c.ServiceName AS callee, c.SpanName AS callee_op, c.Duration AS callee_ns,
        c.err AS callee_err, c.queued OR p.producer AS messaging
    FROM p LEFT JOIN callee c ON c.Key = p.Key
        AND (c.ServiceName <> p.ServiceName OR (p.outbound AND c.declared))
        AND (NOT c.via_link OR c.queued OR p.producer)
    WHERE c.ServiceName IS NOT NULL OR p.outbound
), e AS (
{_edge_select('j.Peer')}
    UNION ALL
    SELECT j.Broker, j.ServiceName, {{broker_op}}, j.SpanName, j.SpanName, j.Duration, j.Failed
    FROM {ix.TABLE} j {{broker_join}}
    WHERE {{broker_where}} AND j.Kind = {ix.PRODUCER}
){_GROUPED}"""


# A window over a long store reads only the callees its callers can have: started after the
# window opened (less a clock-skew allowance) and, but for queue consumers (which may start long
# after their producer), before the last caller ended (plus the allowance).
SKEW_NS = 10 * 60 * 1_000_000_000
CALLEE_WINDOW = "Timestamp >= $callee_lo AND (Timestamp <= $callee_hi OR {consumer})"
CALLER_EXTENT = "SELECT min(Timestamp), max(Timestamp + Duration) FROM {table} WHERE {where}"


def _names(scope: Scope) -> tuple[str, dict[str, Any]]:
    """--service / --operation keep edges touching them, on either end."""
    clauses, params = ["true"], {}
    if scope.services:
        clauses.append("(list_contains($dp_services, caller)"
                       " OR list_contains($dp_services, substr(target, strpos(target, '|') + 1)))")
        params["dp_services"] = list(scope.services)
    if scope.operations:
        clauses.append("(list_contains($dp_ops, span_op) OR list_contains($dp_ops, caller_op)"
                       " OR list_contains($dp_ops, target_op))")
        params["dp_ops"] = list(scope.operations)
    return " AND ".join(clauses), params


def edges(con: Any, scope: Scope, level: str, *, indexed: bool = True) -> list[tuple[Any, ...]]:
    """(kind, caller, caller_op, target, target_op, calls, errors, [p50, p95] ns) per edge;
    operations are NULL at service level. Unpaired client spans come as kind 'unpaired' with
    a NULL target. `indexed`: read the span index (which must be complete), else the spans."""
    if level not in _CALLER_OP:
        raise ValueError(f"no dependency level {level!r}; choose one of {sorted(_CALLER_OP)}")
    caller_op, caller_join = _CALLER_OP[level]
    if indexed:
        caller_join = _INDEX_CALLER_JOIN
    table = ix.TABLE if indexed else "otel_traces"
    window = Scope(scope.since, scope.until)
    where, params = span_filter(window)
    broker_where, broker_params = span_filter(window, "j", prefix="br")
    names, name_params = _names(scope)
    per_op = level == "operation"
    names_ops = per_op or bool(scope.operations)
    callee_where, callee_params = "true", {}
    if window.since is not None or window.until is not None:
        extent = CALLER_EXTENT.format(table=table, where=where)
        lo, hi = con.execute(extent, params).fetchall()[0]
        callee_where = CALLEE_WINDOW.format(
            consumer=f"Kind = {ix.CONSUMER}" if indexed else is_kind("Consumer"))
        callee_params = {"callee_lo": (lo or 0) - SKEW_NS, "callee_hi": (hi or 0) + SKEW_NS}
    sql = (INDEX_EDGES if indexed else EDGES).format(
        callee_where=callee_where,
        parent=("ParentKey" if indexed else "ParentSpanId") if per_op else "NULL",
        op="SpanName" if names_ops else "NULL",
        where=where, caller_op=caller_op, caller_join=caller_join if per_op else "",
        broker_op=(_CALLER_OP["operation"][0].replace("j.outbound", "true") if per_op else "NULL"),
        broker_join=caller_join.replace("j.outbound AND ", "") if per_op else "",
        broker_where=broker_where, names=names,
        group_caller_op="caller_op" if per_op else "NULL",
        group_target_op="target_op" if per_op else "NULL")
    rows: list[tuple[Any, ...]] = con.execute(sql, {**params, **broker_params, **name_params,
                                                    **callee_params}).fetchall()
    return rows
