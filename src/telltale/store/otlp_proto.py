"""OTLP protobuf trace requests (as Arrow from ptars) validated and stored inside DuckDB.

The nested protobuf structs become span rows in one parallel INSERT: binary ids to hex,
enum numbers to the exporter's names, attribute values to `AnyValue.AsString()` text. Arrays
and maps inside attribute values arrive as serialized protobuf (ptars stops at the recursive
type) and go through a small Python function that only runs for those rare values.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from telltale.model import SpanKind, StatusCode
from telltale.normalize.anyvalue import go_json, plain
from telltale.normalize.staging import PART, ProtoTraces
from telltale.store import validate
from telltale.store.otlp_json import attr_entries, attrs_map, entries_map, go_float_sql
from telltale.store.staging_tables import (
    global_setting,
    raise_fallback,
    raise_where,
    stored_per_part,
    unregister,
)

COMPLEX_UDF_NAME = "telltale_pb_complex"


def complex_value_udf(values: list[bytes], is_kvlist: bool) -> str:
    """UDF body: serialized ArrayValue items (AnyValue) or KvList items (KeyValue) → the
    exporter's JSON text. ptars did not look inside these bytes: if they are not valid
    protobuf, the value is kept as base64 items instead of failing the whole commit."""
    try:
        if is_kvlist:
            kvs = [KeyValue.FromString(v) for v in values]
            return go_json({kv.key: plain(kv.value) for kv in kvs})
        return go_json([plain(AnyValue.FromString(v)) for v in values])
    except (DecodeError, ValueError, TypeError, RecursionError):
        return go_json([base64.b64encode(v).decode() for v in values])


def _value(v: str) -> str:
    """A ptars AnyValue struct → its exporter string."""
    return (
        f"coalesce({v}.string_value, CAST({v}.int_value AS VARCHAR),"
        f" CAST({v}.bool_value AS VARCHAR), {go_float_sql(f'{v}.double_value')},"
        f" to_base64({v}.bytes_value),"
        f" CASE WHEN {v}.array_value IS NOT NULL THEN"
        f" {COMPLEX_UDF_NAME}({v}.array_value.values, false)"
        f" WHEN {v}.kvlist_value IS NOT NULL THEN"
        f" {COMPLEX_UDF_NAME}({v}.kvlist_value.values, true) END, '')"
    )


def _enum(expr: str, enum: type[SpanKind] | type[StatusCode]) -> str:
    whens = " ".join(f"WHEN {n} THEN '{m.value}'" for n, m in enumerate(enum))
    return f"CASE {expr} {whens} ELSE '{next(iter(enum)).value}' END"


def _hex(expr: str) -> str:
    return f"lower(hex({expr}))"


def _amap(expr: str) -> str:
    return attrs_map(expr, _value)


# tt_proto_spans / tt_proto_res are the two tables of a `staging.ProtoTraces`. Planning this
# statement costs more than running it on one SDK batch, so each list of attributes is converted
# once into a column (`sentries`, `rentries`) that the map building then refers to, and events
# and links are only planned for when some span has them. A span finds its resource's map by
# position (`Res` numbers resources 0..n-1) in one list, not by a join: DuckDB does not keep
# rows in order through a join, and then inserts them unordered (file order lost, and a third of
# the database file left as free blocks by its parallel insert); the lookup costs the same.
def _staged(with_events: bool, with_links: bool) -> str:
    """The staged rows (stg_spans' columns but Defect) of the registered ProtoTraces."""
    events = (f"""list_transform(s.events, lambda e: {{
        'Timestamp': TRY_CAST(e.time_unix_nano AS BIGINT), 'Name': e.name,
        'Attributes': {_amap("e.attributes")}}})""" if with_events else "[]")
    links = (f"""list_transform(s.links, lambda k: {{
        'TraceId': {_hex("k.trace_id")}, 'SpanId': {_hex("k.span_id")},
        'TraceState': k.trace_state, 'Attributes': {_amap("k.attributes")}}})"""
             if with_links else "[]")
    return f"""
WITH res AS (
    SELECT list({entries_map("rentries")} ORDER BY Res) AS rattrs
    FROM (SELECT Res, {attr_entries("attributes", _value)} AS rentries FROM tt_proto_res)
), sp AS (
    SELECT *, {attr_entries("attributes", _value)} AS sentries FROM tt_proto_spans
    WHERE NOT list_contains($skipped::INTEGER[], Part)
)
SELECT s.Part AS Part, s.Prefix || ' span ' || s.Idx AS Pos,
    strlen(s.name) + coalesce(list_sum(list_transform(s.sentries,
        lambda a: strlen(a.k) + strlen(a.v))), 0) AS RecordBytes,
    TRY_CAST(s.start_time_unix_nano AS BIGINT) AS StartNs,
    TRY_CAST(s.end_time_unix_nano AS BIGINT) AS EndNs,
    {_hex("s.trace_id")} AS TraceId, {_hex("s.span_id")} AS SpanId,
    {_hex("s.parent_span_id")} AS ParentSpanId, s.trace_state AS TraceState, s.name AS SpanName,
    {_enum("s.kind", SpanKind)} AS SpanKind, r.rattrs[s.Res + 1]['service.name'] AS ServiceName,
    r.rattrs[s.Res + 1] AS ResourceAttributes, s.ScopeName AS ScopeName, s.ScopeVersion AS ScopeVersion,
    {entries_map("s.sentries")} AS SpanAttributes,
    {_enum("s.status.code", StatusCode)} AS StatusCode, s.status.message AS StatusMessage,
    {events} AS Events, {links} AS Links
FROM sp s, res r
"""


# Validation runs while staging: valid spans (nearly all) go straight into otel_traces, so they
# are built and written once instead of staged, updated and copied; only the rejected ones are
# staged (with their Defect) for the common quarantine step. Both use validate.py's one rule set.
def store_spans(with_events: bool, with_links: bool) -> str:
    return f"""
INSERT INTO otel_traces
SELECT {validate.span_columns(lowered=True)}
FROM ({_staged(with_events, with_links)}) t
WHERE {validate.span_defect("t", hex_ids=True)} IS NULL
"""


# The first try of every commit: no WHERE (filtering the valid spans out of the rest costs 10 %
# of the insert); a span with a defect raises instead, and the commit is made again with
# store_spans + stage_rejects (staging_tables.py).
def store_all_spans(with_events: bool, with_links: bool) -> str:
    return f"""
INSERT INTO otel_traces
SELECT {validate.span_columns(lowered=True)}
FROM (SELECT * {raise_where(f"{validate.span_defect('t', hex_ids=True)} IS NOT NULL", "StartNs")}
    FROM ({_staged(with_events, with_links)}) t) t
"""


def stage_rejects(with_events: bool, with_links: bool) -> str:
    return f"""
INSERT INTO stg_spans BY NAME
SELECT * FROM (
    SELECT *, {validate.span_defect("t", hex_ids=True)} AS Defect
    FROM ({_staged(with_events, with_links)}) t
) WHERE Defect IS NOT NULL
"""


_FLAGS = [(e, k) for e in (False, True) for k in (False, True)]
STORE_SPANS = {flags: store_spans(*flags) for flags in _FLAGS}
STORE_ALL_SPANS = {flags: store_all_spans(*flags) for flags in _FLAGS}
STAGE_REJECTS = {flags: stage_rejects(*flags) for flags in _FLAGS}


# DuckDB's Arrow scan hands whole record batches to its threads, so one big batch keeps the
# insert on one core. Batches of one row group (DuckDB's default size) are each written as they
# come; smaller ones are copied again to be merged into row groups (2-10 % slower here), and
# sizes that straddle row groups left a third of the file as free blocks.
_ROW_GROUP = 122_880


def merge(traces: list[ProtoTraces]) -> ProtoTraces:
    """A commit's ProtoTraces as one (one statement to plan), resources renumbered, spans in
    record batches of a row group."""
    spans, resources, offset = [], [], 0
    for t in traces:
        spans.append(t.spans.set_column(t.spans.schema.get_field_index("Res"), "Res",
                                        pc.add(t.spans["Res"], offset)))
        resources.append(t.resources.set_column(0, "Res", pc.add(t.resources["Res"],
                                                                         offset)))
        offset += t.resources.num_rows
    table = pa.concat_tables(spans).combine_chunks()
    # A commit smaller than a row group (the receiver's) is cut in two so both cores build it.
    chunk = _ROW_GROUP if table.num_rows >= _ROW_GROUP else max(-(-table.num_rows // 2), 256)
    return ProtoTraces(pa.Table.from_batches(table.to_batches(max_chunksize=chunk), table.schema),
                       pa.concat_tables(resources))


@contextlib.contextmanager
def thread_per_batch(con: duckdb.DuckDBPyConnection, batches: int) -> Iterator[None]:
    """DuckDB inserts one record batch (a row group) per thread at a time: three of them on two
    threads leave a core idle for a third of the insert. Up to twice as many threads as
    configured, one per batch, let the OS share the cores evenly (361 k spans: 141 k -> 148-150 k
    spans/s; JSON, whose batches are small, and the span index were no faster that way)."""
    threads = int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])
    if threads < batches <= 2 * threads and batches % threads:
        with global_setting(con, "threads", batches):
            yield
    else:
        yield


def store(con: duckdb.DuckDBPyConnection, traces: ProtoTraces, params: dict[str, Any],
          skipped: list[int], *, fast: bool = False) -> tuple[dict[int, int], bool]:
    """Store the valid spans of `traces` and stage the rejected ones (inside the caller's
    transaction); returns spans stored per part and whether any span was staged. With `fast`,
    all spans are stored in one statement or NeedsStaging is raised (nothing staged)."""
    flags = (traces.has_events, traces.has_links)
    bounds = {k: params[k] for k in ("min_ts", "max_ts", "max_bytes")} | {"skipped": skipped}
    parts, counts = np.unique(traces.spans[PART].to_numpy(), return_counts=True)
    mine = [int(p) for p in parts if int(p) not in skipped]
    con.register("tt_proto_spans", traces.spans)
    con.register("tt_proto_res", traces.resources)
    try:
        with thread_per_batch(con, len(traces.spans.to_batches())):
            raise_fallback(con, (STORE_ALL_SPANS if fast else STORE_SPANS)[flags],
                           bounds | {"batch": params["batch"]})
        stored = stored_per_part(con, params["batch"], mine)
        if fast:
            return stored, False
        rejected = any(stored.get(int(p), 0) < n for p, n in zip(parts, counts, strict=True)
                       if int(p) in mine)
        if rejected:
            con.execute(STAGE_REJECTS[flags], bounds)
        return stored, rejected
    finally:
        for name in ("tt_proto_spans", "tt_proto_res"):
            unregister(con, name)
