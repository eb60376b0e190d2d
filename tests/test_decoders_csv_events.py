"""CSV-spans and JSON-lines events decoders, checked through a real store."""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import commit_decoded as ingest
from telltale.model import Format
from telltale.normalize import csv_spans, events
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded
from telltale.store.duck import Store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NEZHA = SHARED / "nezha" / "trainticket-2023-01-29" / "trace" / "08_43_trace.csv.gz"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")

T0_MS = 1_700_000_000_000
T0_NS = T0_MS * 1_000_000
TID = "0af7651916cd43dd8448eb211c80319c"


def quarantine(store: Store) -> list[tuple[Any, ...]]:
    return store.query("SELECT Position, Reason, coalesce(Detail, ''), Raw, Signal, BatchId"
                       " FROM telltale_quarantine ORDER BY Position")


# -- CSV: Nezha --------------------------------------------------------------------------------


@needs_shared
def test_nezha_minute_file(tmp_path: Path) -> None:
    data = gzip.decompress(NEZHA.read_bytes())
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert csv_spans.detect_preset(list(rows[0])) == "nezha"
    store, report = ingest(tmp_path, csv_spans.decode(data, DecodeOptions(source=NEZHA.name)),
                           Format.CSV_SPANS)
    with store:
        stored = store.query("SELECT count(*) FROM otel_traces")[0][0]
        quarantined = store.query("SELECT count(*) FROM telltale_quarantine")[0][0]
        roots = store.query("SELECT count(*) FROM otel_traces WHERE ParentSpanId = ''")[0][0]
        services = {r[0] for r in store.query("SELECT DISTINCT ServiceName FROM otel_traces")}
        sample = store.query(
            "SELECT TraceId, SpanId, ParentSpanId, ServiceName, SpanName, Timestamp, Duration,"
            " ResourceAttributes['k8s.pod.name'] FROM otel_traces")
    assert stored + quarantined == len(rows) == report.records_read
    assert roots == sum(r["ParentID"] == "root" for r in rows)
    assert services == {re.sub(r"-[a-z0-9]{6,10}-[a-z0-9]{5}$", "", r["PodName"]) for r in rows}
    by_id = {(r[0], r[1]): r[2:] for r in sample}
    for row in rows[:3] + rows[-2:]:
        start, end = int(row["StartTimeUnixNano"]), int(row["EndTimeUnixNano"])
        parent = "" if row["ParentID"] == "root" else row["ParentID"]
        assert by_id[(row["TraceID"], row["SpanID"])] == (
            parent, re.sub(r"-[a-z0-9]{6,10}-[a-z0-9]{5}$", "", row["PodName"]),
            row["OperationName"], start, end - start, row["PodName"])
    first = by_id[("b0103bb0161ad7fa352fe1828eeb643a", "520b067330e3ede5")]
    assert first == ("", "ts-gateway-service", "/*", 1674981768697000000, 318316530,
                     "ts-gateway-service-6f6cfc45b-h5m2n")


# -- CSV: hand-written -------------------------------------------------------------------------

CSV_MAPPING: dict[str, Any] = {
    "trace_id": "trace", "span_id": "span", "parent_id": "parent", "name": "op",
    "service": "host", "service_from": r"^(\w+)-box$", "start": "begin_ms", "start_unit": "ms",
    "duration": "took", "duration_unit": "ms", "root_values": ["-"],
    "attributes": {"http.route": "route"}, "resource_attributes": ["region"],
    "kind": "Server", "status": "result", "error_values": ["boom"], "ok_values": ["fine"],
}
CSV_TEXT = (
    "trace,span,parent,op,host,begin_ms,took,route,region,result\n"
    f"{TID},b7ad6b7169203331,-,GET /a,web-box,{T0_MS},12.5,/a,eu,fine\n"
    f"{TID},b7ad6b7169203332,b7ad6b7169203331,query,db-box,{T0_MS + 1},3,,eu,boom\n"
    "too,few,columns\n"
    "\n"
    f"{TID},b7ad6b7169203333,b7ad6b7169203331,late,db,soon,3,,eu,fine\n"
    f"{TID},b7ad6b7169203334,b7ad6b7169203331,x,db,{T0_MS},3,,eu,fine,extra\n"
    f"{TID},b7ad6b7169203335,b7ad6b7169203331,caf\xe9,db,{T0_MS},3,,eu,fine\n"
)


def test_csv_mapping_and_broken_rows(tmp_path: Path) -> None:
    data = CSV_TEXT.encode().replace("caf\xe9".encode(), b"caf\xe9")  # a Latin-1 cell
    store, report = ingest(tmp_path, csv_spans.decode(data, DecodeOptions(mapping=CSV_MAPPING)),
                           Format.CSV_SPANS)
    with store:
        spans = {r[0]: r[1:] for r in store.query(
            "SELECT SpanId, TraceId, ParentSpanId, SpanName, ServiceName, SpanKind, Timestamp,"
            " Duration, StatusCode, StatusMessage, SpanAttributes, ResourceAttributes"
            " FROM otel_traces")}
        rejected = quarantine(store)
    assert spans["b7ad6b7169203331"] == (
        TID, "", "GET /a", "web", "Server", T0_NS, 12_500_000, "Ok", "",
        {"http.route": "/a"}, {"service.name": "web", "region": "eu"})
    assert spans["b7ad6b7169203332"] == (
        TID, "b7ad6b7169203331", "query", "db", "Server", T0_NS + 1_000_000, 3_000_000,
        "Error", "boom", {}, {"service.name": "db", "region": "eu"})
    # Header is row 1; the blank line is not a row.
    assert [r[:2] for r in rejected] == [
        ("row 4", "bad_shape"), ("row 5", "bad_timestamp"), ("row 6", "bad_shape"),
        ("row 7", "bad_encoding")]
    assert rejected[0][2:] == ("3 columns where the header has 10", "too,few,columns", "traces",
                               report.batch_id)
    assert rejected[3][3].endswith("caf\\xe9,db,1700000000000,3,,eu,fine")
    assert report.records_read == 6 == len(spans) + len(rejected)


def test_csv_default_mapping_guesses_columns(tmp_path: Path) -> None:
    data = (f"traceId,spanId,parentSpanId,name,serviceName,kind,startTime,durationUs,status\n"
            f"{TID},b7ad6b7169203331,,root,api,SPAN_KIND_SERVER,2023-11-14T22:13:20.5Z,250,"
            "STATUS_CODE_ERROR\n").encode()
    store, _ = ingest(tmp_path, csv_spans.decode(data, DecodeOptions()), Format.CSV_SPANS)
    with store:
        row = store.query("SELECT SpanName, ServiceName, SpanKind, Timestamp, Duration,"
                          " StatusCode FROM otel_traces")
    assert row == [("root", "api", "Server", T0_NS + 500_000_000, 250_000, "Error")]


def test_csv_header_that_fits_no_mapping_is_one_reject() -> None:
    decoded = csv_spans.decode(b"a,b,c\n1,2,3\n4,5,6\n", DecodeOptions())
    assert decoded.spans == []
    [reject] = decoded.rejects
    assert (reject.position, reject.reason.value, reject.raw) == (
        "row 1", "bad_shape", "a,b,c\n1,2,3\n4,5,6\n")
    assert "no column for trace_id" in reject.detail and "header: a, b, c" in reject.detail
    with_mapping = csv_spans.decode(b"a,b\n1,2\n", DecodeOptions(mapping={"trace_id": "tid"}))
    assert "column 'tid' not in header" in with_mapping.rejects[0].detail


def test_csv_mapping_errors_are_user_errors() -> None:
    with pytest.raises(events.MappingError, match="unknown CSV mapping keys"):
        csv_spans.decode(b"a\n1\n", DecodeOptions(mapping={"trace": "a"}))
    with pytest.raises(events.MappingError, match="unknown CSV preset"):
        csv_spans.decode(b"a\n1\n", DecodeOptions(mapping={"preset": "jaeger"}))
    with pytest.raises(events.MappingError, match="service_from"):
        csv_spans.decode(b"a\n1\n", DecodeOptions(mapping={"service_from": "(("}))
    assert csv_spans.decode(b"", DecodeOptions()) == Decoded()


def test_nezha_preset_pod_names() -> None:
    pods = {"ts-gateway-service-6f6cfc45b-h5m2n": "ts-gateway-service",
            "ts-station-food-service-dc4d75dd-fw6ft": "ts-station-food-service",
            "redis-0": "redis", "mysql-12": "mysql", "node-exporter-x7k2p": "node-exporter",
            "ts-ui-dashboard": "ts-ui-dashboard"}
    header = "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration"
    lines = [header] + [f"{TID},b7ad6b716920333{i},root,{pod},op,{T0_NS},{T0_NS + 1000},1"
                        for i, pod in enumerate(pods)]
    [table] = csv_spans.decode("\n".join(lines).encode(), DecodeOptions()).spans
    assert table.column("ServiceName").to_pylist() == list(pods.values())
    assert [dict(r)["k8s.pod.name"] for r in table.column("ResourceAttributes").to_pylist()] == list(pods)
    assert table.column("ParentSpanId").to_pylist() == [""] * len(pods)


# -- events ------------------------------------------------------------------------------------

SPAWN = {"ts": 1732000000.25, "event": "spawn", "model": "claude-x", "caste": "worker",
         "task": "t-17", "source": "router", "outcome": "success", "duration_ms": 1834,
         "tokens": 1200}


def _lines(*records: object) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in records) + b"\n"


def test_agent_spawn_preset(tmp_path: Path) -> None:
    assert events.detect_preset(SPAWN) == "agent-spawn"
    timeout = {**SPAWN, "ts": 1732000001, "caste": "queen", "outcome": "timeout", "tokens": None,
               "service": "hive", "duration_ms": 30000.5}
    other_task = {**SPAWN, "task": "t-18", "outcome": "crash"}
    data = _lines(SPAWN, timeout, other_task)
    decoded = events.decode(data, DecodeOptions(source="agents.jsonl"))
    store, report = ingest(tmp_path, decoded, Format.EVENTS_JSONL)
    with store:
        rows = store.query(
            "SELECT TraceId, SpanId, ParentSpanId, SpanName, ServiceName, SpanKind, Timestamp,"
            " Duration, StatusCode, StatusMessage, SpanAttributes['agent.model'],"
            " SpanAttributes['agent.caste'], SpanAttributes['agent.task'],"
            " SpanAttributes['agent.source'], SpanAttributes['agent.outcome'],"
            " SpanAttributes['agent.tokens'], cardinality(SpanAttributes) FROM otel_traces"
            " ORDER BY Timestamp, SpanAttributes['agent.task']")
    first, crash, late = rows
    assert first[3:] == ("agent.spawn", "agents", "Internal", 1732000000250000000,
                         1_834_000_000, "Ok", "", "claude-x", "worker", "t-17", "router",
                         "success", "1200", 6)
    assert late[4:] == ("hive", "Internal", 1732000001000000000, 30_000_500_000, "Error",
                        "timeout", "claude-x", "queen", "t-17", "router", "timeout", None, 5)
    assert crash[8:10] == ("Error", "crash")
    # One trace per task; span ids derived, 16 hex, distinct; all roots.
    assert first[0] == late[0] != crash[0] and len(first[0]) == 32
    assert len({first[1], late[1], crash[1]}) == 3 and all(len(r[1]) == 16 for r in rows)
    assert {r[2] for r in rows} == {""}
    assert report.total_stored == 3
    # Deterministic: same bytes and source, same ids; another source, other span ids.
    again = events.decode(data, DecodeOptions(source="agents.jsonl")).spans[0]
    moved = events.decode(data, DecodeOptions(source="elsewhere.jsonl")).spans[0]
    assert again.column("SpanId").equals(decoded.spans[0].column("SpanId"))
    assert set(moved.column("SpanId").to_pylist()).isdisjoint(
        decoded.spans[0].column("SpanId").to_pylist())
    assert moved.column("TraceId").equals(decoded.spans[0].column("TraceId"))


def test_event_lines_that_cannot_be_decoded_are_quarantined(tmp_path: Path) -> None:
    data = _lines(SPAWN, b"{not json", b"[1, 2]", {"event": "spawn", "model": "m"},
                  {**SPAWN, "ts": "yesterday"}, b'{"ts": 1, "event": "caf\xe9"}', b"   ",
                  {**SPAWN, "ts": 12})
    store, report = ingest(tmp_path, events.decode(data, DecodeOptions(source="a.jsonl")),
                           Format.EVENTS_JSONL)
    with store:
        rejected = quarantine(store)
        stored = store.query("SELECT count(*) FROM otel_traces")[0][0]
    assert rejected[0][2].startswith("not JSON: ")  # the parser's own words follow
    assert [r[:3] for r in rejected[1:]] == [
        ("line 3", "bad_shape", "a JSON list, not an event object"),
        ("line 4", "bad_shape", "missing field 'ts'"),
        ("line 5", "bad_shape", "field 'ts' is not a time (auto): 'yesterday'"),
        ("line 6", "bad_encoding", "'utf-8' codec can't decode byte 0xe9 in position 23:"
                                   " invalid continuation byte"),
        ("line 8", "bad_timestamp", ""),  # 12 s after the epoch: impossible, the store says
    ]
    assert [r[:2] for r in rejected[:1]] == [("line 2", "unparsable")]
    assert [r[3] for r in rejected[:3]] == ["{not json", "[1, 2]", '{"event":"spawn","model":"m"}']
    assert rejected[4][3] == '{"ts": 1, "event": "caf\\xe9"}'
    assert stored == 1 and report.records_read == 7  # the blank line is not a record


def test_events_explicit_mapping(tmp_path: Path) -> None:
    mapping = {
        "name": "{job}/{step}", "start": "started", "end": "finished", "time_unit": "iso8601",
        "trace_id": "run", "span_id": "id", "parent_id": "parent", "kind": "kind",
        "service_name": "ci", "status": "conclusion", "status_message": "why",
        "attributes": ["runner", "attempt"], "attribute_prefix": "ci.",
    }
    step = {"job": "build", "step": "test", "started": "2023-11-14T22:13:20.123456789Z",
            "finished": "2023-11-14T22:13:21Z", "run": TID, "id": "b7ad6b7169203331",
            "parent": "b7ad6b7169203330", "kind": "consumer", "conclusion": "failure",
            "why": "exit 2", "runner": "ubuntu", "attempt": 2, "ignored": True}
    store, _ = ingest(tmp_path, events.decode(_lines(step), DecodeOptions(mapping=mapping)),
                      Format.EVENTS_JSONL)
    with store:
        row = store.query("SELECT TraceId, SpanId, ParentSpanId, SpanName, ServiceName, SpanKind,"
                          " Timestamp, Duration, StatusCode, StatusMessage, SpanAttributes"
                          " FROM otel_traces")
    assert row == [(TID, "b7ad6b7169203331", "b7ad6b7169203330", "build/test", "ci", "Consumer",
                    T0_NS + 123_456_789, 876_543_211, "Error", "exit 2",
                    {"ci.runner": "ubuntu", "ci.attempt": "2"})]


def test_events_unmappable_source_and_bad_mapping() -> None:
    decoded = events.decode(_lines({"msg": "hello"}, {"msg": "again"}), DecodeOptions())
    [reject] = decoded.rejects
    assert (reject.position, reject.reason.value) == ("document", "bad_shape")
    assert reject.detail.startswith("line 1: no field for name, start")
    assert reject.raw == '{"msg":"hello"}\n{"msg":"again"}\n'
    with pytest.raises(events.MappingError, match="unknown events mapping keys"):
        events.decode(_lines(SPAWN), DecodeOptions(mapping={"timestamp": "ts"}))
    with pytest.raises(events.MappingError, match="time_unit"):
        events.decode(_lines(SPAWN), DecodeOptions(mapping={"time_unit": "days"}))


# -- events: merging the lines of one unit of work ---------------------------------------------

T0_S = T0_MS // 1000
SPAN_1, SPAN_2, SPAN_3 = "b7ad6b7169203331", "b7ad6b7169203332", "b7ad6b7169203333"


def _worker(worker: str, span_id: str, **fields: object) -> dict[str, object]:
    return {"event": "spawn", "model": "claude-x", "caste": "worker", "task": "t-17",
            "worker": worker, "trace_id": TID, "span_id": span_id, **fields}


MERGE_LOG = _lines(
    _worker("w-1", SPAN_1, ts=T0_S),  # line 1
    _worker("w-2", SPAN_2, ts=T0_S + 1, source="router"),  # line 2
    b"{torn",  # line 3
    # complete lines are written when the worker ends: ts is the end, duration the whole run
    _worker("w-1", SPAN_1, ts=T0_S + 2.5, event="complete", outcome="success",
            duration_ms=2500, tokens=900),  # line 4
    _worker("w-3", SPAN_3, ts=T0_S + 3),  # line 5: never completes
    _worker("w-1", SPAN_1, ts=T0_S + 4, event="note", tokens=1000),  # line 6: no outcome
    # ts and duration disagree (rounded log): the end is the later of the two
    _worker("w-2", SPAN_2, ts=T0_S + 31, event="complete", outcome="timeout",
            duration_ms=30_000.5, source="fallback"),  # line 7
)

_SPAN_COLUMNS = ("SELECT SpanId, TraceId, SpanName, ServiceName, Timestamp, Duration, StatusCode,"
                 " StatusMessage, SpanAttributes FROM otel_traces ORDER BY Timestamp")


def test_spawn_and_complete_lines_merge_into_one_span(tmp_path: Path) -> None:
    decoded = events.decode(MERGE_LOG, DecodeOptions(source="agents.jsonl"))
    [table] = decoded.spans
    assert table.column("Pos").to_pylist() == ["lines 1,4,6", "lines 2,7", "line 5"]
    sizes = [len(line) for line in MERGE_LOG.split(b"\n")]
    assert table.column("RecordBytes").to_pylist() == [
        sizes[0] + sizes[3] + sizes[5], sizes[1] + sizes[6], sizes[4]]
    store, report = ingest(tmp_path, decoded, Format.EVENTS_JSONL)
    with store:
        w1, w2, w3 = store.query(_SPAN_COLUMNS)
        rejected = quarantine(store)
    base = {"agent.model": "claude-x", "agent.caste": "worker", "agent.task": "t-17"}
    # From the spawn (start) to the latest of the later lines (the note at +4 s); the name is
    # the first line's; the status the last outcome seen (the note has none).
    assert w1 == (SPAN_1, TID, "agent.spawn", "agents", T0_NS, 4_000_000_000, "Ok", "",
                  {**base, "agent.worker": "w-1", "agent.outcome": "success",
                   "agent.tokens": "1000"})
    assert w2 == (SPAN_2, TID, "agent.spawn", "agents", T0_NS + 1_000_000_000, 30_000_500_000,
                  "Error", "timeout",
                  {**base, "agent.worker": "w-2", "agent.source": "fallback",
                   "agent.outcome": "timeout"})
    assert w3[:8] == (SPAN_3, TID, "agent.spawn", "agents", T0_NS + 3_000_000_000, 0, "Unset", "")
    assert w3[8] == {**base, "agent.worker": "w-3", "telltale.open": "true"}
    # Records read counts merged units plus rejects: 3 spans + the torn line, from 7 lines.
    assert [r[:2] for r in rejected] == [("line 3", "unparsable")]
    assert report.records_read == 4 and report.total_stored == 3


def test_merge_by_null_gives_one_span_per_line(tmp_path: Path) -> None:
    decoded = events.decode(MERGE_LOG, DecodeOptions(mapping={"merge_by": None}))
    [table] = decoded.spans
    assert table.column("Pos").to_pylist() == [f"line {n}" for n in (1, 2, 4, 5, 6, 7)]
    assert all("telltale.open" not in dict(a) for a in table.column("SpanAttributes").to_pylist())
    store, _ = ingest(tmp_path, decoded, Format.EVENTS_JSONL)
    with store:
        dups = store.query("SELECT count(*) FROM (SELECT TraceId, SpanId FROM otel_traces"
                           " GROUP BY ALL HAVING count(*) > 1)")[0][0]
    assert dups == 2


def test_merge_by_fields_and_fallback() -> None:
    anonymous = b"\n".join(orjson.dumps({k: v for k, v in orjson.loads(line).items()
                                         if k not in ("trace_id", "span_id")})
                           for line in MERGE_LOG.split(b"\n") if line.startswith(b'{"'))
    # No span id field: agent-spawn merges by worker; span ids are derived from the first line.
    [table] = events.decode(anonymous, DecodeOptions(source="a.jsonl")).spans
    assert table.column("Pos").to_pylist() == ["lines 1,3,5", "lines 2,6", "line 4"]
    assert len(set(table.column("SpanId").to_pylist())) == 3
    # A list of fields: every one must match (and be present) for lines to merge.
    [table] = events.decode(MERGE_LOG, DecodeOptions(mapping={"merge_by": ["worker", "source"]})
                            ).spans
    assert table.column("Pos").to_pylist() == [f"line {n}" for n in (1, 2, 4, 5, 6, 7)]
    [table] = events.decode(MERGE_LOG, DecodeOptions(mapping={"merge_by": ["task"]})).spans
    assert table.column("Pos").to_pylist() == ["lines 1,2,4,5,6,7"]
    with pytest.raises(events.MappingError, match="merge_by"):
        events.decode(MERGE_LOG, DecodeOptions(mapping={"merge_by": 3}))


def test_simulated_agent_events_have_no_duplicates(tmp_path: Path) -> None:
    from telltale.sim import SimConfig, simulate, write_agent_events

    result = simulate(SimConfig(duration_s=300))
    truth = result.truth["agents"]
    path = write_agent_events(result, tmp_path / "agents.jsonl")
    decoded = events.decode(path.read_bytes(), DecodeOptions(source=path.name,
                                                             mapping={"preset": "agent-spawn"}))
    store, report = ingest(tmp_path, decoded, Format.EVENTS_JSONL)
    with store:
        dups = store.query("SELECT count(*) FROM (SELECT TraceId, SpanId FROM otel_traces"
                           " GROUP BY ALL HAVING count(*) > 1)")[0][0]
        open_spans = store.query(
            "SELECT SpanAttributes['agent.worker'], Timestamp, Duration FROM otel_traces"
            " WHERE SpanAttributes['telltale.open'] = 'true' ORDER BY Timestamp")
        closed = store.query("SELECT count(*) FROM otel_traces WHERE Duration > 0"
                             " AND SpanAttributes['agent.outcome'] IS NOT NULL")[0][0]
    assert truth["stuck_workers"]  # the simulation injects one
    assert dups == 0 and report.total_quarantined == 0
    assert report.records_read == report.total_stored == truth["spawns"]
    assert len(result.agent_events) == truth["spawns"] + truth["completes"]
    assert closed == truth["completes"]
    assert [w for w, _, _ in open_spans] == truth["stuck_workers"]
    for (_, start, duration), spawned in zip(open_spans, truth["stuck_spawn_ns"], strict=True):
        assert abs(start - spawned) < 1_000 and duration == 0  # the log keeps µs
