"""The least DuckDB itself does to store the bench's traces files: floors for telltale.

Run: python bench/bench_floor.py [--minutes 30]

Simulates the same files as bench_ingest.py and times statements that do only what storing
needs, leaving out everything telltale adds (validation, quarantine and torn-line detection,
idempotency hashing, the span index, reading and splitting files):

- OTLP JSON lines, already in memory as record batches of 16 lines (as telltale registers them):
  one statement `from_json` with the same struct, unnest, attribute values as strings, `MAP`s,
  insert into a table of otel_traces' columns, commit; once more with attributes as plain lists
  instead of `MAP`s, to show what DuckDB's key checks cost.
- OTLP protobuf: ptars decoding into Arrow (with upb's check and the flattening telltale needs,
  on one core: both hold the GIL), then one statement: hex ids, attribute strings, `MAP`s,
  insert, commit. Its CPU per span is what any receiver storing these spans must spend at least.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from bench_ingest import simulated_traces
from telltale.normalize.otlp_arrow import trace_requests
from telltale.normalize.otlp_binary import split_delimited
from telltale.store import otlp_proto
from telltale.store.otlp_json import TRACE_REQUEST

_MAP = "MAP(VARCHAR, VARCHAR)"
_TABLE = f"""CREATE TABLE otel_traces (Timestamp BIGINT, TraceId VARCHAR, SpanId VARCHAR,
    ParentSpanId VARCHAR, TraceState VARCHAR, SpanName VARCHAR, SpanKind VARCHAR,
    ServiceName VARCHAR, ResourceAttributes {_MAP}, ScopeName VARCHAR, ScopeVersion VARCHAR,
    SpanAttributes {_MAP}, Duration BIGINT, StatusCode VARCHAR, StatusMessage VARCHAR,
    Events STRUCT("Timestamp" BIGINT, "Name" VARCHAR, Attributes {_MAP})[],
    Links STRUCT(TraceId VARCHAR, SpanId VARCHAR, TraceState VARCHAR, Attributes {_MAP})[],
    BatchId INTEGER)"""


def _value(v: str) -> str:
    return (f"coalesce({v}.stringValue, {v}.intValue, CAST({v}.boolValue AS VARCHAR),"
            f" CAST({v}.doubleValue AS VARCHAR), '')")


def _statement(maps: bool) -> str:
    def attrs(expr: str) -> str:
        entries = f"list_transform({expr}, lambda a: {{'k': a.key, 'v': {_value('a.value')}}})"
        return f"map_from_entries({entries})" if maps else entries
    service = ("ra['service.name']" if maps
               else "list_filter(ra, lambda x: x.k = 'service.name')[1].v")
    # SQL from this file's own constants only (no data reaches it).
    return f"""
INSERT INTO otel_traces
WITH r AS (SELECT unnest(from_json(Line, '{TRACE_REQUEST}').resourceSpans) AS rs FROM lines),
res AS (SELECT {attrs('rs.resource.attributes')} AS ra, unnest(rs.scopeSpans) AS ss FROM r),
sp AS (SELECT ra, ss.scope AS sc, unnest(ss.spans) AS s FROM res)
SELECT s.startTimeUnixNano::BIGINT, s.traceId, s.spanId, coalesce(s.parentSpanId, ''),
    coalesce(s.traceState, ''), s.name,
    CASE s.kind WHEN '1' THEN 'Internal' WHEN '2' THEN 'Server' WHEN '3' THEN 'Client'
        WHEN '4' THEN 'Producer' WHEN '5' THEN 'Consumer' ELSE 'Unspecified' END,
    {service}, ra, sc.name, sc.version, {attrs('s.attributes')},
    s.endTimeUnixNano::BIGINT - s.startTimeUnixNano::BIGINT, coalesce(s.status.code, 'Unset'),
    coalesce(s.status.message, ''),
    list_transform(s.events, lambda e: {{'Timestamp': e.timeUnixNano::BIGINT, 'Name': e.name,
        'Attributes': {attrs('e.attributes')}}}),
    [], 1
FROM sp
"""  # noqa: S608


def _proto_value(v: str) -> str:
    return (f"coalesce({v}.string_value, CAST({v}.int_value AS VARCHAR),"
            f" CAST({v}.bool_value AS VARCHAR), CAST({v}.double_value AS VARCHAR), '')")


def _proto_map(expr: str) -> str:
    return (f"map_from_entries(list_transform({expr},"
            f" lambda a: {{'k': a.key, 'v': {_proto_value('a.value')}}}))")


_PROTO = f"""
INSERT INTO otel_traces
WITH res AS (SELECT list({_proto_map('attributes')} ORDER BY Res) AS rattrs FROM proto_res)
SELECT s.start_time_unix_nano::BIGINT, lower(hex(s.trace_id)), lower(hex(s.span_id)),
    lower(hex(s.parent_span_id)), s.trace_state, s.name,
    CASE s.kind WHEN 1 THEN 'Internal' WHEN 2 THEN 'Server' WHEN 3 THEN 'Client'
        WHEN 4 THEN 'Producer' WHEN 5 THEN 'Consumer' ELSE 'Unspecified' END,
    r.rattrs[s.Res + 1]['service.name'], r.rattrs[s.Res + 1], s.ScopeName, s.ScopeVersion,
    {_proto_map('s.attributes')},
    s.end_time_unix_nano::BIGINT - s.start_time_unix_nano::BIGINT,
    CASE s.status.code WHEN 1 THEN 'Ok' WHEN 2 THEN 'Error' ELSE 'Unset' END, s.status.message,
    list_transform(s.events, lambda e: {{'Timestamp': e.time_unix_nano::BIGINT, 'Name': e.name,
        'Attributes': {_proto_map('e.attributes')}}}),
    [], 1
FROM proto_spans s, res r
"""  # noqa: S608


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _proto(path: Path, db: Path) -> None:
    data = path.read_bytes()
    t0, c0 = time.perf_counter(), _cpu()
    frames = split_delimited(data)
    assert frames is not None
    traces, _ = trace_requests(frames, ["message"] * len(frames))
    assert traces is not None
    traces = otlp_proto.merge([traces])
    decode, decode_cpu = time.perf_counter() - t0, _cpu() - c0
    con = duckdb.connect(str(db))
    try:
        con.execute(_TABLE)
        con.register("proto_spans", traces.spans)
        con.register("proto_res", traces.resources)
        t0, c0 = time.perf_counter(), _cpu()
        con.execute("BEGIN")
        con.execute(_PROTO)
        con.execute("COMMIT")
        insert, insert_cpu = time.perf_counter() - t0, _cpu() - c0
        spans = int(con.execute("SELECT count(*) FROM otel_traces").fetchall()[0][0])
    finally:
        con.close()
    print(f"bare protobuf: {spans:,} spans; decoding {decode:.2f}s, insert {insert:.2f}s = "
          f"{spans / (decode + insert):,.0f} spans/s one after the other; CPU "
          f"{(decode_cpu + insert_cpu) / spans * 1e6:.1f} µs per span, so at most "
          f"{2 * spans / (decode_cpu + insert_cpu):,.0f} spans/s on two cores kept busy")


def _run(lines: pa.Table, db: Path, maps: bool) -> tuple[int, float]:
    con = duckdb.connect(str(db))
    try:
        con.execute(_TABLE if maps else _TABLE.replace(_MAP, "STRUCT(k VARCHAR, v VARCHAR)[]"))
        con.execute("SET preserve_insertion_order = false")
        con.register("lines", lines)
        t0 = time.perf_counter()
        con.execute("BEGIN")
        con.execute(_statement(maps))
        con.execute("COMMIT")
        secs = time.perf_counter() - t0
        return int(con.execute("SELECT count(*) FROM otel_traces").fetchall()[0][0]), secs
    finally:
        con.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        path, proto, _, _ = simulated_traces(out)  # the same files as bench_ingest.py
        text = path.read_text()
        table = pa.table({"Line": pa.array(text.splitlines())})
        lines = pa.Table.from_batches(table.to_batches(max_chunksize=16))
        print(f"{path.stat().st_size / 1e6:.1f} MB of OTLP JSON lines, {os.cpu_count()} cores; "
              "lines in memory before the clock starts")
        for maps in (True, False):
            spans, secs = _run(lines, out / f"floor-{maps}.duckdb", maps)
            kind = "MAP attributes (the exporter schema)" if maps else "attributes as lists"
            print(f"bare DuckDB, {kind}: {spans:,} spans in {secs:.2f}s = {spans / secs:,.0f} "
                  "spans/s")
        _proto(proto, out / "floor-proto.duckdb")


if __name__ == "__main__":
    main()
