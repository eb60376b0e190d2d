"""OTLP protobuf trace requests (as Arrow from ptars) staged inside DuckDB.

The nested protobuf structs become staged rows in one parallel INSERT: binary ids to hex,
enum numbers to the exporter's names, attribute values to `AnyValue.AsString()` text. Arrays
and maps inside attribute values arrive as serialized protobuf (ptars stops at the recursive
type) and go through a small Python function that only runs for those rare values.
"""

from __future__ import annotations

import base64

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from telltale.model import SpanKind, StatusCode
from telltale.normalize.anyvalue import go_json, plain
from telltale.store.otlp_json import FLOAT_UDF_NAME, attr_entries, attrs_map, entries_map

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
        f" CAST({v}.bool_value AS VARCHAR), {FLOAT_UDF_NAME}({v}.double_value),"
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
# and links are only planned for when some span has them.
def stage_spans(with_events: bool, with_links: bool) -> str:
    events = (f"""list_transform(s.events, lambda e: {{
        'Timestamp': TRY_CAST(e.time_unix_nano AS BIGINT), 'Name': e.name,
        'Attributes': {_amap("e.attributes")}}})""" if with_events else "[]")
    links = (f"""list_transform(s.links, lambda k: {{
        'TraceId': {_hex("k.trace_id")}, 'SpanId': {_hex("k.span_id")},
        'TraceState': k.trace_state, 'Attributes': {_amap("k.attributes")}}})"""
             if with_links else "[]")
    return f"""
INSERT INTO stg_spans BY NAME
WITH res AS (
    SELECT Res, {entries_map("rentries")} AS rattrs
    FROM (SELECT Res, {attr_entries("attributes", _value)} AS rentries FROM tt_proto_res)
), sp AS (
    SELECT *, {attr_entries("attributes", _value)} AS sentries FROM tt_proto_spans
)
SELECT s.Part AS Part, s.Prefix || ' span ' || s.Idx AS Pos,
    strlen(s.name) + coalesce(list_sum(list_transform(s.sentries,
        lambda a: strlen(a.k) + strlen(a.v))), 0) AS RecordBytes,
    TRY_CAST(s.start_time_unix_nano AS BIGINT) AS StartNs,
    TRY_CAST(s.end_time_unix_nano AS BIGINT) AS EndNs,
    {_hex("s.trace_id")} AS TraceId, {_hex("s.span_id")} AS SpanId,
    {_hex("s.parent_span_id")} AS ParentSpanId, s.trace_state AS TraceState, s.name AS SpanName,
    {_enum("s.kind", SpanKind)} AS SpanKind, r.rattrs['service.name'] AS ServiceName,
    r.rattrs AS ResourceAttributes, s.ScopeName AS ScopeName, s.ScopeVersion AS ScopeVersion,
    {entries_map("s.sentries")} AS SpanAttributes,
    {_enum("s.status.code", StatusCode)} AS StatusCode, s.status.message AS StatusMessage,
    {events} AS Events, {links} AS Links
FROM sp s JOIN res r ON s.Res = r.Res
"""


STAGE_SPANS = {(e, k): stage_spans(e, k) for e in (False, True) for k in (False, True)}
