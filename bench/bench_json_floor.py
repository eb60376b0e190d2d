"""The least DuckDB itself does to store an OTLP JSON-lines traces file: a floor for telltale.

Run: python bench/bench_json_floor.py [--minutes 30]

Simulates the same file as bench_ingest.py, reads its lines into memory (not timed), and times
one statement that does only what storing needs: `from_json` with the same struct, unnest,
attribute values as strings, `MAP`s, insert into a table of otel_traces' columns, commit. No
validation, no quarantine or torn-line detection, no idempotency (hashing), no span index, no
reading or splitting the file: everything telltale adds is left out. The statement runs the way
telltale's runs (record batches of 16 lines, unordered insert), and once more with attributes
as plain lists instead of `MAP`s, to show what the key checks cost.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from telltale.sim import SimConfig, simulate, write_otlp_json
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
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        result = simulate(SimConfig(seed=args.seed, duration_s=args.minutes * 60))
        path = next(p for p in write_otlp_json(result, out / "json") if p.name.startswith("traces"))
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


if __name__ == "__main__":
    main()
