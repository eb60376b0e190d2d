"""OTLP ingest, end to end: files → detection → decoding → validation → the exporter-shaped tables.

Expected values are computed here from the OTLP JSON itself (the format's own meaning), never
from telltale's decoders.
"""

from __future__ import annotations

import gzip
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import (
    KIND_NAMES,
    OTLP_DIR,
    STATUS_NAMES,
    T0,
    attrs,
    delimited,
    exporter_string,
    json_to_proto,
    jsonl,
    pinned_settings,
    requires_shared_otlp,
    rows,
    sid,
    span,
    tid,
    trace_request,
)
from telltale.analyses.quality import quality
from telltale.cli import main
from telltale.ingest import ingest_bytes, ingest_paths
from telltale.model import Format, QualityFlag, QuarantineReason, Signal
from telltale.store import Store

CORE = ["otel_traces", "otel_logs", "otel_metrics_gauge", "otel_metrics_sum",
        "otel_metrics_histogram", "otel_metrics_exponential_histogram", "otel_metrics_summary"]
# Without the external data one placeholder keeps each parametrized test, so it is reported as
# skipped with requires_shared_otlp's reason rather than pytest's "empty parameter set".
OTLP_FILES = sorted(p.name for p in OTLP_DIR.glob("*.json")
                    if not p.name.endswith(".jaegerjson.json")) if OTLP_DIR.is_dir() else [
    "shared-data-absent"]


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((OTLP_DIR / name).read_bytes())
    return doc


def _canon(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS))


def _table(store: Store, table: str) -> list[dict[str, Any]]:
    return _canon(rows(store, f"SELECT * EXCLUDE (BatchId) FROM {table}"))  # noqa: S608


def _all_tables(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {t: _table(store, t) for t in CORE}


def _hex(value: str | None) -> str:
    return (value or "").lower()


# -- expected rows, from the OTLP JSON -----------------------------------------------------------


def expected_spans(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for rs in doc.get("resourceSpans", []):
        res = attrs(rs.get("resource", {}).get("attributes"))
        for ss in rs.get("scopeSpans", []):
            scope = ss.get("scope", {})
            for sp in ss.get("spans", []):
                start, end = int(sp["startTimeUnixNano"]), int(sp["endTimeUnixNano"])
                status = sp.get("status", {})
                out.append({
                    "Timestamp": start,
                    "TraceId": _hex(sp["traceId"]),
                    "SpanId": _hex(sp["spanId"]),
                    "ParentSpanId": _hex(sp.get("parentSpanId")),
                    "TraceState": sp.get("traceState", ""),
                    "SpanName": sp["name"],
                    "SpanKind": KIND_NAMES[int(sp.get("kind", 0))],
                    "ServiceName": res.get("service.name", ""),
                    "ResourceAttributes": res,
                    "ScopeName": scope.get("name", ""),
                    "ScopeVersion": scope.get("version", ""),
                    "SpanAttributes": attrs(sp.get("attributes")),
                    "Duration": end - start,
                    "StatusCode": STATUS_NAMES[int(status.get("code", 0))],
                    "StatusMessage": status.get("message", ""),
                    "Events": [{"Timestamp": int(e["timeUnixNano"]), "Name": e.get("name", ""),
                                "Attributes": attrs(e.get("attributes"))}
                               for e in sp.get("events", [])],
                    "Links": [{"TraceId": _hex(k["traceId"]), "SpanId": _hex(k["spanId"]),
                               "TraceState": k.get("traceState", ""),
                               "Attributes": attrs(k.get("attributes"))}
                              for k in sp.get("links", [])],
                })
    return _canon(out)


def expected_logs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for rl in doc.get("resourceLogs", []):
        res = attrs(rl.get("resource", {}).get("attributes"))
        for sl in rl.get("scopeLogs", []):
            scope = sl.get("scope", {})
            for rec in sl.get("logRecords", []):
                ts = int(rec.get("timeUnixNano", 0)) or int(rec["observedTimeUnixNano"])
                out.append({
                    "Timestamp": ts,
                    "ObservedTimestamp": int(rec.get("observedTimeUnixNano", 0)),
                    "TraceId": _hex(rec.get("traceId")),
                    "SpanId": _hex(rec.get("spanId")),
                    "TraceFlags": int(rec.get("flags", 0)),
                    "SeverityText": rec.get("severityText", ""),
                    "SeverityNumber": int(rec.get("severityNumber", 0)),
                    "ServiceName": res.get("service.name", ""),
                    "Body": exporter_string(rec.get("body")),
                    "ResourceSchemaUrl": rl.get("schemaUrl", ""),
                    "ResourceAttributes": res,
                    "ScopeSchemaUrl": sl.get("schemaUrl", ""),
                    "ScopeName": scope.get("name", ""),
                    "ScopeVersion": scope.get("version", ""),
                    "ScopeAttributes": attrs(scope.get("attributes")),
                    "LogAttributes": attrs(rec.get("attributes")),
                    "EventName": rec.get("eventName", ""),
                })
    return _canon(out)


def _number(p: dict[str, Any]) -> float:
    return float(p["asDouble"]) if "asDouble" in p else float(int(p["asInt"]))


def expected_metrics(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for rm in doc.get("resourceMetrics", []):
        res = attrs(rm.get("resource", {}).get("attributes"))
        for sm in rm.get("scopeMetrics", []):
            scope = sm.get("scope", {})
            for m in sm.get("metrics", []):
                common = {
                    "ResourceAttributes": res, "ResourceSchemaUrl": rm.get("schemaUrl", ""),
                    "ScopeName": scope.get("name", ""), "ScopeVersion": scope.get("version", ""),
                    "ScopeAttributes": attrs(scope.get("attributes")),
                    "ScopeSchemaUrl": sm.get("schemaUrl", ""),
                    "ServiceName": res.get("service.name", ""), "MetricName": m["name"],
                    "MetricDescription": m.get("description", ""), "MetricUnit": m.get("unit", ""),
                }
                for kind, key in (("gauge", "gauge"), ("sum", "sum"), ("histogram", "histogram"),
                                  ("exponential_histogram", "exponentialHistogram")):
                    if key not in m:
                        continue
                    body = m[key]
                    for p in body["dataPoints"]:
                        row = {**common, "Attributes": attrs(p.get("attributes")),
                               "StartTimeUnix": int(p.get("startTimeUnixNano", 0)),
                               "TimeUnix": int(p["timeUnixNano"]), "Flags": int(p.get("flags", 0))}
                        temporality = int(body.get("aggregationTemporality", 0))
                        if kind == "gauge":
                            row["Value"] = _number(p)
                        elif kind == "sum":
                            row.update(Value=_number(p), AggregationTemporality=temporality,
                                       IsMonotonic=bool(body.get("isMonotonic", False)))
                        elif kind == "histogram":
                            row.update(Count=int(p["count"]), Sum=float(p["sum"]),
                                       BucketCounts=[int(c) for c in p["bucketCounts"]],
                                       ExplicitBounds=[float(b) for b in p["explicitBounds"]],
                                       Min=float(p["min"]), Max=float(p["max"]),
                                       AggregationTemporality=temporality)
                        else:
                            pos, neg = p.get("positive", {}), p.get("negative", {})
                            row.update(Count=int(p["count"]), Sum=float(p["sum"]),
                                       Scale=int(p.get("scale", 0)),
                                       ZeroCount=int(p.get("zeroCount", 0)),
                                       PositiveOffset=int(pos.get("offset", 0)),
                                       PositiveBucketCounts=[int(c) for c in
                                                             pos.get("bucketCounts", [])],
                                       NegativeOffset=int(neg.get("offset", 0)),
                                       NegativeBucketCounts=[int(c) for c in
                                                             neg.get("bucketCounts", [])],
                                       Min=float(p["min"]), Max=float(p["max"]),
                                       AggregationTemporality=temporality)
                        out.setdefault(kind, []).append(row)
    return {k: _canon(v) for k, v in out.items()}


# -- the real OTLP fixtures ----------------------------------------------------------------------


@pytest.fixture
def otlp_copy(tmp_path: Path) -> Path:
    """The OTLP example files copied aside (tests write derived files next to them)."""
    if not OTLP_DIR.is_dir():
        pytest.skip(f"external OTLP fixtures not present at {OTLP_DIR}")
    dest = tmp_path / "otlp"
    dest.mkdir()
    for name in OTLP_FILES:
        shutil.copy(OTLP_DIR / name, dest / name)
    return dest


def _ingest_one(db: Path, path: Path, **kw: Any) -> tuple[Store, Any]:
    store = Store(db, settings=pinned_settings(db))
    (result,) = ingest_paths(store, [str(path)], **kw)
    assert result.error is None
    return store, result


@requires_shared_otlp
@pytest.mark.parametrize("name", OTLP_FILES)
def test_otlp_json_example_fields_exact(name: str, tmp_path: Path) -> None:
    doc = _load(name)
    store, result = _ingest_one(tmp_path / "t.duckdb", OTLP_DIR / name)
    with store:
        assert result.format is Format.OTLP_JSON
        assert result.report.total_quarantined == 0
        assert rows(store, "SELECT count(*) AS n FROM telltale_quarantine") == [{"n": 0}]
        assert _table(store, "otel_traces") == expected_spans(doc)
        assert _table(store, "otel_logs") == expected_logs(doc)
        metrics = expected_metrics(doc)
        for kind in ("gauge", "sum", "histogram", "exponential_histogram"):
            assert _table(store, f"otel_metrics_{kind}") == metrics.get(kind, [])
        n = (len(expected_spans(doc)) + len(expected_logs(doc))
             + sum(len(v) for v in metrics.values()))
        assert n > 0
        assert result.report.total_stored == n


@requires_shared_otlp
def test_trace_example_spot_values(tmp_path: Path) -> None:
    """The details the brief names, spelled out once as literals from the example file."""
    store, _ = _ingest_one(tmp_path / "t.duckdb", OTLP_DIR / "otel-proto_examples_trace.json")
    with store:
        (r,) = rows(store, "SELECT * FROM otel_traces")
        assert r["TraceId"] == "5b8efff798038103d269b633813fc60c"
        assert r["SpanId"] == "eee19b7ec3c1b174"
        assert r["ParentSpanId"] == "eee19b7ec3c1b173"
        assert r["Timestamp"] == 1544712660000000000
        assert r["Duration"] == 1_000_000_000
        assert r["SpanKind"] == "Server"
        assert r["ScopeName"] == "my.library"
        assert r["ScopeVersion"] == "1.0.0"
        assert r["ServiceName"] == "my.service"
        got = store.query("SELECT SpanAttributes['my.span.attr'] FROM otel_traces")
        assert got == [("some value",)]


@requires_shared_otlp
def test_log_example_attribute_stringification(tmp_path: Path) -> None:
    store, _ = _ingest_one(tmp_path / "t.duckdb", OTLP_DIR / "otel-proto_examples_logs.json")
    with store:
        (r,) = rows(store, "SELECT * FROM otel_logs")
        assert r["LogAttributes"] == {
            "string.attribute": "some string",
            "boolean.attribute": "true",
            "int.attribute": "10",
            "double.attribute": "637.704",
            "array.attribute": '["many","values"]',
            "map.attribute": '{"some.map.key":"some value"}',
        }
        assert (r["SeverityText"], r["SeverityNumber"]) == ("Information", 10)
        assert r["Body"] == "Example log record"
        assert r["TraceId"] == "5b8efff798038103d269b633813fc60c"


@requires_shared_otlp
def test_event_example_event_name_and_map_body(tmp_path: Path) -> None:
    store, _ = _ingest_one(tmp_path / "t.duckdb", OTLP_DIR / "otel-proto_examples_events.json")
    with store:
        (r,) = rows(store, "SELECT * FROM otel_logs")
        assert r["EventName"] == "browser.page_view"
        assert (r["TraceId"], r["SpanId"]) == ("", "")
        # A map body is stored as JSON (Go's json.Marshal: keys sorted, ints stay ints).
        assert orjson.loads(r["Body"]) == {
            "type": 0, "url": "https://www.guidgenerator.com/online-guid-generator.aspx",
            "referrer": "https://wwww.google.com", "title": "Free Online GUID Generator"}


@requires_shared_otlp
def test_metrics_example_values(tmp_path: Path) -> None:
    store, _ = _ingest_one(tmp_path / "t.duckdb", OTLP_DIR / "otel-proto_examples_metrics.json")
    with store:
        assert store.query("SELECT MetricName, Value, AggregationTemporality, IsMonotonic "
                           "FROM otel_metrics_sum") == [("my.counter", 5.0, 1, True)]
        assert store.query("SELECT MetricName, Value FROM otel_metrics_gauge") == [
            ("my.gauge", 10.0)]
        assert store.query("SELECT Count, Sum, BucketCounts, ExplicitBounds, Min, Max "
                           "FROM otel_metrics_histogram") == [(2, 2.0, [1, 1], [1.0], 0.0, 2.0)]
        assert store.query(
            "SELECT Count, Sum, Scale, ZeroCount, PositiveOffset, PositiveBucketCounts, Min, Max "
            "FROM otel_metrics_exponential_histogram") == [(3, 10.0, 0, 1, 1, [0, 2], 0.0, 5.0)]


@requires_shared_otlp
def test_duplicate_span_ids_are_both_stored(tmp_path: Path) -> None:
    name = "jaeger_fixture_otlp2jaeger-in.otlp.json"
    store, result = _ingest_one(tmp_path / "t.duckdb", OTLP_DIR / name)
    with store:
        assert result.report.stored == Counter({Signal.TRACES: 2})
        assert store.query("SELECT TraceId, SpanId, count(*) FROM otel_traces GROUP BY ALL") == [
            ("83a9efd15c1c98a977e0711cc93ee28b", "e127af99e3b3e074", 2)]
        flags = quality(store).total.flags
        assert flags[QualityFlag.DUPLICATE] == 2
        assert flags[QualityFlag.ORPHAN] == 2  # their parent 909541b92cf05311 is not in the file


# -- the same content as protobuf, gzip, stdin ----------------------------------------------------


def _json_rows(otlp_copy: Path, tmp_path: Path, name: str) -> dict[str, list[dict[str, Any]]]:
    store, _ = _ingest_one(tmp_path / f"json-{name}.duckdb", otlp_copy / name)
    with store:
        return _all_tables(store)


@requires_shared_otlp
@pytest.mark.parametrize("name", OTLP_FILES)
@pytest.mark.parametrize("framing", ["single", "delimited"])
def test_protobuf_matches_json(name: str, framing: str, otlp_copy: Path,
                               tmp_path: Path) -> None:
    """One message per file, and a length-delimited stream holding one message (a short
    exporter flush), both store exactly what the JSON does."""
    expected = _json_rows(otlp_copy, tmp_path, name)
    message = json_to_proto(_load(name))
    pb = tmp_path / (Path(name).stem + ".pb")
    pb.write_bytes(message.SerializeToString() if framing == "single" else delimited([message]))
    store, result = _ingest_one(tmp_path / "pb.duckdb", pb)
    with store:
        assert result.format is Format.OTLP_PROTO
        assert result.report.total_quarantined == 0
        assert _all_tables(store) == expected


@requires_shared_otlp
@pytest.mark.parametrize("group", [
    ["jaeger_fixture_example_trace.otlp.json", "jaeger_fixture_otlp2jaeger-in.otlp.json",
     "otel-proto_examples_trace.json"],
    ["otel-proto_examples_logs.json", "otel-proto_examples_events.json"],
], ids=["traces", "logs"])
def test_protobuf_delimited_stream_matches_json(group: list[str], otlp_copy: Path,
                                                tmp_path: Path) -> None:
    combined = tmp_path / "combined.jsonl"
    combined.write_bytes(jsonl([_load(n) for n in group]))
    store, _ = _ingest_one(tmp_path / "json.duckdb", combined)
    with store:
        expected = _all_tables(store)
    stream = tmp_path / "stream.bin"
    stream.write_bytes(delimited([json_to_proto(_load(n)) for n in group]))
    store, result = _ingest_one(tmp_path / "pb.duckdb", stream)
    with store:
        assert result.format is Format.OTLP_PROTO
        assert result.report.total_quarantined == 0
        assert _all_tables(store) == expected
        assert sum(len(v) for v in expected.values()) == result.report.total_stored


@requires_shared_otlp
@pytest.mark.parametrize("name", OTLP_FILES)
def test_gzip_ingests_identically(name: str, otlp_copy: Path, tmp_path: Path) -> None:
    expected = _json_rows(otlp_copy, tmp_path, name)
    gz = tmp_path / (name + ".gz")
    gz.write_bytes(gzip.compress((otlp_copy / name).read_bytes()))
    store, result = _ingest_one(tmp_path / "gz.duckdb", gz)
    with store:
        assert result.format is Format.OTLP_JSON
        assert _all_tables(store) == expected


@requires_shared_otlp
def test_directory_ingest_takes_every_file(otlp_copy: Path, tmp_path: Path) -> None:
    db = tmp_path / "dir.duckdb"
    with Store(db, settings=pinned_settings(db)) as store:
        results = ingest_paths(store, [str(otlp_copy)])
        assert sorted(Path(r.source).name for r in results) == OTLP_FILES
        assert all(r.error is None and r.report and r.report.total_quarantined == 0
                   for r in results)
        expected_traces = _canon([s for n in OTLP_FILES for s in expected_spans(_load(n))])
        assert _table(store, "otel_traces") == expected_traces


@requires_shared_otlp
def test_stdin_via_cli(otlp_copy: Path, tmp_path: Path) -> None:
    name = "otel-proto_examples_logs.json"
    expected = _json_rows(otlp_copy, tmp_path, name)
    db = tmp_path / "stdin.duckdb"
    res = CliRunner().invoke(main, ["--db", str(db), "ingest", "-"],
                             input=(otlp_copy / name).read_bytes())
    assert res.exit_code == 0, res.output
    with Store(db, read_only=True) as store:
        assert _all_tables(store) == expected
        assert store.query("SELECT Source, Format FROM telltale_ingest_batches") == [
            ("-", "otlp-json")]


def test_stdin_gzip_protobuf_via_cli(tmp_path: Path) -> None:
    """Works without the external data: gzip + protobuf + stdin together."""
    req = trace_request([span(tid(7), sid(1), "root", kind=2),
                         span(tid(7), sid(2), "child", parent=sid(1), kind=3)])
    db = tmp_path / "t.duckdb"
    payload = gzip.compress(json_to_proto(req).SerializeToString())
    res = CliRunner().invoke(main, ["--db", str(db), "ingest", "-"], input=payload)
    assert res.exit_code == 0, res.output
    with Store(db, read_only=True) as store:
        assert store.query("SELECT SpanName, SpanKind, ParentSpanId FROM otel_traces "
                           "ORDER BY SpanName") == [("child", "Client", sid(1)),
                                                    ("root", "Server", "")]


# -- the broken-lines file ------------------------------------------------------------------------


def _good_line(i: int) -> bytes:
    req = trace_request([span(tid(1000 + i), sid(1), f"good-{i}", start=T0 + i * 1_000_000,
                              attributes={"i": i})])
    return orjson.dumps(req)


def _broken_lines(rng: random.Random) -> list[tuple[bytes, QuarantineReason]]:
    """190 torn or garbled lines, each with the reason it must be quarantined for."""
    template = _good_line(999)
    makers = [
        # Torn mid-JSON: a prefix of a valid line (never valid JSON itself).
        lambda: (template[:rng.randrange(2, len(template) - 1)], QuarantineReason.UNPARSABLE),
        # Control-character junk (valid UTF-8, not JSON).
        lambda: (bytes(rng.choice([1, 2, 3, 7, 8, 27, 127]) for _ in range(rng.randrange(3, 40)))
                 + b"junk", QuarantineReason.UNPARSABLE),
        # A torn write padded with NULs.
        lambda: (b'{"resourceSpans":[' + b"\x00" * rng.randrange(1, 30), QuarantineReason.UNPARSABLE),
        # Invalid UTF-8 inside an otherwise plausible line.
        lambda: (template[:40] + b"\xff\xfe\xc3" + template[40:80], QuarantineReason.BAD_ENCODING),
        lambda: (b"\xc3\x28 latin-1 \xe9t\xe9", QuarantineReason.BAD_ENCODING),
        # Valid JSON of the wrong shape.
        lambda: (b"{}", QuarantineReason.BAD_SHAPE),
        lambda: (b"[1,2]", QuarantineReason.BAD_SHAPE),
        lambda: (b"42", QuarantineReason.BAD_SHAPE),
        lambda: (b"null", QuarantineReason.BAD_SHAPE),
        lambda: (b'"just a string"', QuarantineReason.BAD_SHAPE),
        lambda: (b'{"resourceSpans":"nope"}', QuarantineReason.BAD_SHAPE),
        # Log-request garbage in a traces file.
        lambda: (b'{"resourceSpans":[{"scopeSpans":7}]}', QuarantineReason.BAD_SHAPE),
        lambda: (b'{"resourceLogs":[{"scopeLogs":[garbage', QuarantineReason.UNPARSABLE),
        lambda: (b'{"resourceLogs":5}', QuarantineReason.BAD_SHAPE),
        # A fragment of a pretty-printed document.
        lambda: (b'    "spans": [', QuarantineReason.UNPARSABLE),
    ]
    return [makers[i % len(makers)]() for i in range(190)]


def _broken_file(seed: int = 20260101) -> tuple[bytes, dict[int, tuple[bytes, QuarantineReason]],
                                                 list[int]]:
    rng = random.Random(seed)
    bad = _broken_lines(rng)
    rng.shuffle(bad)
    good_at = sorted(rng.sample(range(1, 211), 20))
    lines: list[bytes] = []
    expected_bad: dict[int, tuple[bytes, QuarantineReason]] = {}
    it = iter(bad)
    good_i = 0
    for no in range(1, 211):
        if no in good_at:
            lines.append(_good_line(good_i))
            good_i += 1
        else:
            line, reason = next(it)
            expected_bad[no] = (line, reason)
            lines.append(line)
    for line in lines:
        assert b"\n" not in line and line.strip()
    return b"\n".join(lines) + b"\n", expected_bad, good_at


@pytest.mark.parametrize("fmt", [Format.AUTO, Format.OTLP_JSON])
def test_broken_lines_are_quarantined_with_line_numbers(fmt: Format, tmp_path: Path) -> None:
    data, expected_bad, good_at = _broken_file()
    path = tmp_path / "broken.jsonl"
    path.write_bytes(data)
    db = tmp_path / "t.duckdb"
    with Store(db, settings=pinned_settings(db)) as store:
        (result,) = ingest_paths(store, [str(path)], fmt=fmt)
        assert result.format is Format.OTLP_JSON, result.evidence
        report = result.report
        assert report.stored == Counter({Signal.TRACES: 20})
        assert report.quarantined == Counter(r for _, r in expected_bad.values())
        assert report.records_read == 210
        assert store.query("SELECT count(*) FROM otel_traces") == [(20,)]
        assert sorted(n for (n,) in store.query("SELECT SpanName FROM otel_traces")) == sorted(
            f"good-{i}" for i in range(20))
        got = {r["Position"]: r for r in rows(store, "SELECT * FROM telltale_quarantine")}
        assert len(got) == 190
        for no, (line, reason) in expected_bad.items():
            q = got[f"line {no}"]
            assert q["Reason"] == reason.value, (no, line)
            assert q["Raw"] == line.decode(errors="replace"), no
        assert not set(good_at) & {int(p.split()[1]) for p in got}
        batches = store.query("SELECT RecordsRead, Stored, Quarantined FROM "
                              "telltale_ingest_batches")
        assert batches == [(210, 20, 190)]


@pytest.mark.parametrize("line", [b'{"resourceSpans":[{"scopeSpans":7}]}',
                                  b'{"resourceSpans":[{"scopeSpans":[{"spans":"x"}]}]}'],
                         ids=["scopeSpans-number", "spans-string"])
def test_mistyped_nested_field_is_not_lost_silently(line: bytes, store: Store) -> None:
    data = _good_line(1) + b"\n" + line + b"\n"
    result = ingest_bytes(store, data, source="nested.jsonl", fmt=Format.OTLP_JSON)
    assert result.report.stored == Counter({Signal.TRACES: 1})
    assert store.query("SELECT Position, Reason FROM telltale_quarantine") == [
        ("line 2", QuarantineReason.BAD_SHAPE.value)]


def test_a_vendor_object_with_a_spanid_key_does_not_quarantine_a_good_line(store: Store) -> None:
    """Records are also counted by their `"spanId":` keys in the raw text; an unknown vendor
    object carrying the same key must not make a complete line look like it lost a span."""
    req = trace_request([span("ab" * 16, "cd" * 8, "GET /v")])
    req["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["x-vendor"] = {"spanId": "ef" * 8}
    result = ingest_bytes(store, jsonl([req]), source="vendor.jsonl", fmt=Format.OTLP_JSON)
    assert result.report.stored == Counter({Signal.TRACES: 1})
    assert store.query("SELECT count(*) FROM telltale_quarantine") == [(0,)]
    assert store.query("SELECT SpanId FROM otel_traces") == [("cd" * 8,)]


def _json_or_proto(req: dict[str, Any], fmt: Format) -> bytes:
    return jsonl([req]) if fmt is Format.OTLP_JSON else json_to_proto(req).SerializeToString()


@pytest.mark.parametrize("fmt", [Format.OTLP_JSON, Format.OTLP_PROTO])
def test_double_attributes_stringified_like_the_collector(fmt: Format, store: Store) -> None:
    values = {"int-like": 5.0, "big": 1e20, "huge": 1e21, "tiny": 1.5e-7, "small": 0.000015,
              "plain": 637.704, "negative": -2.5}
    req = trace_request([span(tid(1), sid(1), "d", attributes=values)])
    ingest_bytes(store, _json_or_proto(req, fmt), source="d", fmt=fmt, signal=Signal.TRACES)
    (got,) = store.query("SELECT SpanAttributes FROM otel_traces")[0]
    assert got == {"int-like": "5", "big": "100000000000000000000", "huge": "1e+21",
                   "tiny": "1.5e-7", "small": "0.000015", "plain": "637.704",
                   "negative": "-2.5"}


@pytest.mark.parametrize("fmt", [Format.OTLP_JSON, Format.OTLP_PROTO])
def test_duplicate_attribute_keys_do_not_abort_the_file(fmt: Format, store: Store) -> None:
    dup = span(tid(1), sid(2), "dup-keys")
    dup["attributes"] = [{"key": "k", "value": {"stringValue": "first"}},
                         {"key": "k", "value": {"stringValue": "second"}}]
    req = trace_request([span(tid(1), sid(1), "fine"), dup])
    result = ingest_bytes(store, _json_or_proto(req, fmt), source="dup", fmt=fmt,
                          signal=Signal.TRACES)
    assert result.report.records_read == 2
    assert store.query("SELECT count(*) FROM otel_traces WHERE SpanName = 'fine'") == [(1,)]
    # Like a Go map built from the same pairs, the last value of a repeated key wins.
    assert store.query("SELECT SpanAttributes FROM otel_traces WHERE SpanName = 'dup-keys'") == [
        ({"k": "second"},)]


@requires_shared_otlp
def test_jaeger_rendering_of_the_same_trace_matches(tmp_path: Path) -> None:
    """otlp2jaeger-out is the Jaeger UI JSON of otlp2jaeger-in: both must store the same spans."""
    fields = ("Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName", "Duration",
              "ServiceName")

    def stored(name: str, db: str) -> list[tuple[Any, ...]]:
        store, result = _ingest_one(tmp_path / db, OTLP_DIR / name)
        with store:
            assert result.report.total_quarantined == 0
            return sorted(tuple(r[f] for f in fields)
                          for r in rows(store, "SELECT * FROM otel_traces"))

    jaeger = stored("jaeger_fixture_otlp2jaeger-out.jaegerjson.json", "j.duckdb")
    otlp = stored("jaeger_fixture_otlp2jaeger-in.otlp.json", "o.duckdb")
    assert jaeger == otlp
    assert len(otlp) == 2


# -- property tests ----------------------------------------------------------------------------

_hex16 = st.integers(1, 2**64 - 1).map(lambda n: f"{n:016x}")
_hex32 = st.integers(1, 2**128 - 1).map(lambda n: f"{n:032x}")
_attr_values = st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.booleans())
_span = st.fixed_dictionaries({
    "trace": _hex32, "span": _hex16,
    "parent": st.one_of(st.just(""), _hex16),
    "name": st.text(min_size=1, max_size=30),
    "kind": st.integers(0, 5),
    "status": st.integers(0, 2),
    "message": st.text(max_size=10),
    "start": st.integers(T0 - 10**18, T0 + 3 * 10**16),
    "duration": st.integers(0, 10**12),
    "attrs": st.dictionaries(st.text(min_size=1, max_size=10), _attr_values, max_size=5),
    "upper": st.booleans(),
})


def _request_of(spans: list[dict[str, Any]]) -> dict[str, Any]:
    def case(x: str, upper: bool) -> str:
        return x.upper() if upper else x
    return trace_request([
        span(case(s["trace"], s["upper"]), case(s["span"], s["upper"]), s["name"],
             parent=case(s["parent"], s["upper"]), start=s["start"],
             end=s["start"] + s["duration"], kind=s["kind"], status=s["status"],
             message=s["message"], attributes=s["attrs"])
        for s in spans], service="prop-svc")


def _expected_readback(spans: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    def text(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)
    return sorted(
        (s["trace"], s["span"], s["parent"], s["name"], KIND_NAMES[s["kind"]], s["start"],
         s["duration"], STATUS_NAMES[s["status"]], s["message"],
         sorted((k, text(v)) for k, v in s["attrs"].items()), "prop-svc")
        for s in spans)


def _readback(store: Store, batch: int) -> list[tuple[Any, ...]]:
    out = []
    for r in rows(store, "SELECT * FROM otel_traces WHERE BatchId = ?", [batch]):
        out.append((r["TraceId"], r["SpanId"], r["ParentSpanId"], r["SpanName"], r["SpanKind"],
                    r["Timestamp"], r["Duration"], r["StatusCode"], r["StatusMessage"],
                    sorted(r["SpanAttributes"].items()), r["ServiceName"]))
    return sorted(out)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One store for all examples (each example is its own batch; opening stores is slow)."""
    db = tmp_path_factory.mktemp("prop") / "p.duckdb"
    with Store(db, settings=pinned_settings(db)) as s:
        yield s


_PROP = settings(max_examples=30, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


@_PROP
@given(spans=st.lists(_span, min_size=1, max_size=6))
def test_property_otlp_json_roundtrip(shared_store: Store, spans: list[dict[str, Any]]) -> None:
    result = ingest_bytes(shared_store, jsonl([_request_of(spans)]), source="prop.jsonl")
    assert result.format is Format.OTLP_JSON
    assert result.report.total_quarantined == 0
    assert _readback(shared_store, result.report.batch_id) == _expected_readback(spans)


@_PROP
@given(spans=st.lists(_span, min_size=1, max_size=6))
def test_property_otlp_protobuf_roundtrip(shared_store: Store,
                                          spans: list[dict[str, Any]]) -> None:
    payload = json_to_proto(_request_of(spans)).SerializeToString()
    result = ingest_bytes(shared_store, payload, source="prop.bin", fmt=Format.OTLP_PROTO)
    assert result.report.total_quarantined == 0
    assert _readback(shared_store, result.report.batch_id) == _expected_readback(spans)


@pytest.mark.parametrize("container", ['{"values": {"v": [{"stringValue": "x"}]}}',
                                       '{"values": {"0": {}}}'])
def test_a_malformed_array_or_kvlist_keeps_its_json_text(container: str) -> None:
    """Found by the fuzzer: an arrayValue whose `values` is an object must not fail the commit
    (the UDF raising inside DuckDB aborts the whole batch); the value keeps its text."""
    from telltale.store.otlp_json import complex_value_udf

    assert complex_value_udf(container) == container
