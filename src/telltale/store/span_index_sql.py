"""SQL for the span index (`telltale_span_index`): one row per stored span holding exactly what the
dependency graph reads, computed once when the span is committed instead of on every query.

- `Key` / `ParentKey` / `LinkKeys`: 64-bit keys of (TraceId, SpanId), (TraceId, ParentSpanId)
  and each link's (TraceId, SpanId), so that parent/child and link joins compare one integer
  instead of two strings. key(t, s) = md5(t)[first 64 bits] XOR s read as a 64-bit number (span
  ids are 16 hex digits; any other id falls back to md5(t:s)). md5 is stable across DuckDB
  versions (DuckDB's own `hash()` is not, and keys written by one version are joined with keys
  written by the next), and is paid once per span: the trace's hash serves both keys.
  Collisions: within a trace, distinct span ids give distinct keys (XOR with one value is a
  bijection), so a wrong parent can only come from another trace, where two id pairs share a
  key with probability 2^-64: among 10 M spans the chance of any collision is about
  N^2 / 2^65 ≈ 3e-6. Ids differing only in hex case share a key; the write path and the decoders
  store them lower-cased, so that never happens to spans stored by telltale.
- `Kind` as a small code (either exporter spelling), `Failed`, and the peer naming of client and
  producer spans (`Peer`, `Broker`): the attribute lookups that cost most of a query's time.

Rows are written by the store's one write path, in the transaction of their spans (store/duck.py),
and by schema migration 3 for the spans stored before it. Spans inserted into otel_traces any
other way are not indexed; readers then find the counts differ and use the raw spans
(store/deps_sql.py).
"""

from __future__ import annotations

from telltale.store.scope_sql import is_error, is_kind

TABLE = "telltale_span_index"

# Span kinds as stored in `Kind`; 0: a kind neither exporter spelling names.
OTHER, UNSPECIFIED, INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = range(7)
_KINDS = {"Unspecified": UNSPECIFIED, "Internal": INTERNAL, "Server": SERVER, "Client": CLIENT,
          "Producer": PRODUCER, "Consumer": CONSUMER}

CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    Key         UBIGINT NOT NULL,  -- key(TraceId, SpanId)
    ParentKey   UBIGINT,           -- key(TraceId, ParentSpanId); NULL for a root
    Timestamp   BIGINT NOT NULL,
    Duration    BIGINT NOT NULL,
    ServiceName VARCHAR NOT NULL,
    SpanName    VARCHAR NOT NULL,
    Kind        UTINYINT NOT NULL, -- see span_index_sql.SERVER etc.
    Failed      BOOLEAN NOT NULL,
    Peer        VARCHAR,           -- client / producer: 'kind|name' it reaches if no span answers
    Broker      VARCHAR,           -- producer: 'broker|system/destination' (NULL: no system)
    LinkKeys    UBIGINT[],         -- links that can be calls (not to the span's own parent)
    BatchId     INTEGER NOT NULL
)"""


def trace_hash(trace: str) -> str:
    return f"('0x' || md5({trace})[1:16])::UBIGINT"


def key(trace_hash_sql: str, trace: str, span: str) -> str:
    """The 64-bit key of an id pair (see the module docstring), given its trace's hash."""
    return (f"coalesce(xor({trace_hash_sql}, CASE WHEN length({span}) = 16"
            f" THEN try_cast('0x' || {span} AS UBIGINT) END),"
            f" ('0x' || md5({trace} || ':' || {span})[1:16])::UBIGINT)")


def _attr(key_name: str, alias: str = "", *, raw: bool = False) -> str:
    """An attribute's value, an empty one read as missing; `raw` skips that check, for maps
    known to hold no empty value."""
    col = f"{alias}." if alias else ""
    lookup = f"{col}SpanAttributes['{key_name}']"
    return lookup if raw else f"nullif({lookup}, '')"


def _peer(alias: str, *, raw: bool = False) -> str:
    """The peer a client span names, as 'kind|name' (most explicit attribute first; NULL when
    none). One COALESCE, so each span pays only for the lookups up to the first hit."""
    def attr(key_name: str) -> str:
        return _attr(key_name, alias, raw=raw)
    return (f"coalesce('external|' || {attr('peer.service')},"
            f" 'external|' || {attr('service.peer.name')},"
            f" 'database|' || coalesce({attr('db.system.name')}, {attr('db.system')})"
            f" || coalesce('/' || {attr('db.namespace')}, ''),"
            f" 'broker|' || {broker(alias, raw=raw)},"
            f" 'external|' || coalesce({attr('gen_ai.provider.name')}, {attr('gen_ai.system')},"
            f" {attr('server.address')}, {attr('net.peer.name')}))")


def broker(alias: str, *, raw: bool = False) -> str:
    return (f"{_attr('messaging.system', alias, raw=raw)} || coalesce('/' || "
            f"{_attr('messaging.destination.name', alias, raw=raw)}, '')")


def unpaired_target(alias: str) -> str:
    """What a client / producer span with no callee reaches: 'skip|' for a producer whose broker
    edge covers it, its peer, or 'unpaired|'. An empty value must read as missing, and the
    NULLIFs that ensure it cost more than the lookups: a span whose attributes hold no empty
    value (nearly all) takes the same expression without them. `{alias}.producer` must exist."""
    def target(raw: bool) -> str:
        # (nested CASEs, not AND: a projection evaluates both sides of an AND on every row)
        return (f"coalesce(CASE WHEN {alias}.producer THEN CASE WHEN"
                f" {_attr('messaging.system', alias, raw=raw)} IS NOT NULL THEN 'skip|' END END,"
                f" {_peer(alias, raw=raw)}, 'unpaired|')")
    return (f"CASE WHEN list_contains(map_values({alias}.SpanAttributes), '') THEN {target(False)}"
            f" ELSE {target(True)} END")


def _kind_code() -> str:
    whens = " ".join(f"WHEN {is_kind(name)} THEN {code}" for name, code in _KINDS.items())
    return f"CASE {whens} ELSE {OTHER} END"


# A link is kept only where the graph could use it: ids present, and not the span's own parent
# (that one is a parent/child call already).
_LINK_KEYS = (f"nullif(list_transform(list_filter(s.Links, lambda l: l.TraceId IS NOT NULL"
              f" AND l.SpanId IS NOT NULL AND NOT (l.TraceId = s.TraceId"
              f" AND l.SpanId = s.ParentSpanId)),"
              f" lambda l: {key(trace_hash('l.TraceId'), 'l.TraceId', 'l.SpanId')}), [])")

_FILL = f"""
INSERT INTO {TABLE}
SELECT {key('s.th', 's.TraceId', 's.SpanId')},
    CASE WHEN s.ParentSpanId <> '' THEN {key('s.th', 's.TraceId', 's.ParentSpanId')} END,
    s.Timestamp, s.Duration, s.ServiceName, s.SpanName, s.kind, s.failed,
    CASE WHEN s.kind IN ({CLIENT}, {PRODUCER}) THEN {unpaired_target('s')} END,
    CASE WHEN s.producer THEN 'broker|' || {broker('s')} END,
    CASE WHEN len(s.Links) > 0 THEN {_LINK_KEYS} END,
    s.BatchId
FROM (
    SELECT *, {_kind_code()} AS kind, {is_kind('Producer')} AS producer, {is_error()} AS failed,
        {trace_hash('TraceId')} AS th
    FROM otel_traces WHERE {{where}}
) s
"""

# The write path: the spans of the batches just stored ($lo..$hi).
FILL_BATCHES = _FILL.format(where="BatchId BETWEEN $lo AND $hi")

FILL_ALL = _FILL.format(where="true")
CLEAR = f"DELETE FROM {TABLE}"

# Schema migration 3 (store/schema.py): the table, filled from the spans already stored (emptied
# first: a store whose version rows were rolled back may hold the table already).
MIGRATION = [CREATE, CLEAR, FILL_ALL]

EXISTS = f"SELECT count(*) FROM information_schema.tables WHERE table_name = '{TABLE}'"
# Spans are never deleted, so equal counts say every stored span is indexed.
COUNTS = f"SELECT (SELECT count(*) FROM otel_traces), (SELECT count(*) FROM {TABLE})"
