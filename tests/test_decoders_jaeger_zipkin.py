"""Jaeger UI JSON and Zipkin v2 decoders, checked through a real store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import commit_decoded as ingest
from telltale.model import Format, SpanKind
from telltale.normalize import jaeger, zipkin
from telltale.normalize.options import DecodeOptions
from telltale.store.duck import Store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")

T0_US = 1_700_000_000_000_000  # 2023-11-14, microseconds as Jaeger and Zipkin write them
T0_NS = T0_US * 1000


_COLUMNS = ("Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName,"
            " ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode,"
            " StatusMessage, Events, Links")


def spans_by_id(store: Store) -> dict[str, dict[str, Any]]:
    rows = store.query(f"SELECT {_COLUMNS} FROM otel_traces")  # noqa: S608 (constant)
    cols = _COLUMNS.split(", ")
    return {row[2]: dict(zip(cols, row, strict=True)) for row in rows}


def quarantine(store: Store) -> list[tuple[str, str, str, str]]:
    return [tuple(r) for r in store.query(
        "SELECT Position, Reason, coalesce(Detail, ''), Raw FROM telltale_quarantine"
        " ORDER BY Position")]


# -- Jaeger ------------------------------------------------------------------------------------


@needs_shared
def test_jaeger_fixture_matches_its_otlp_source(tmp_path: Path) -> None:
    """The Jaeger rendering decodes back to the OTLP spans it was made from (duplicates kept)."""
    otlp = json.loads((SHARED / "otlp" / "jaeger_fixture_otlp2jaeger-in.otlp.json").read_text())
    data = (SHARED / "otlp" / "jaeger_fixture_otlp2jaeger-out.jaegerjson.json").read_bytes()
    store, report = ingest(tmp_path, jaeger.decode(data, DecodeOptions()), Format.JAEGER_JSON)
    with store:
        rows = store.query("SELECT TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName,"
                           " ScopeName, Timestamp, Duration, SpanAttributes, StatusCode,"
                           " ResourceAttributes FROM otel_traces")
    resource = otlp["resourceSpans"][0]
    scope = resource["scopeSpans"][0]
    expected = [
        (s["traceId"], s["spanId"], s["parentSpanId"], s["name"], SpanKind.from_otlp(s["kind"]),
         resource["resource"]["attributes"][0]["value"]["stringValue"], scope["scope"]["name"],
         int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]),
         {a["key"]: a["value"]["stringValue"] for a in s["attributes"]}, "Unset",
         {"service.name": "telemetrygen"})
        for s in scope["spans"]
    ]
    assert rows == expected
    assert report.total_stored == 2 and report.total_quarantined == 0


def _jaeger_trace() -> dict[str, Any]:
    tid = "00000000000000000000000000abc123"
    return {
        "traceID": "abc123",  # Jaeger trims leading zeros
        "spans": [
            {
                "traceID": "abc123", "spanID": "a1", "operationName": "GET /cart",
                "references": [], "startTime": T0_US, "duration": 2500,
                "tags": [
                    {"key": "span.kind", "type": "string", "value": "server"},
                    {"key": "http.status_code", "type": "int64", "value": 200},
                    {"key": "cache.hit", "type": "bool", "value": False},
                    {"key": "ratio", "type": "float64", "value": 0.5},
                    {"key": "otel.status_code", "type": "string", "value": "OK"},
                ],
                "logs": [{"timestamp": T0_US + 10, "fields": [
                    {"key": "event", "type": "string", "value": "cache miss"},
                    {"key": "key", "type": "string", "value": "cart:7"}]}],
                "processID": "p1", "warnings": None,
            },
            {
                "traceID": tid, "spanID": "00000000000000b2", "operationName": "SELECT cart",
                "references": [
                    {"refType": "FOLLOWS_FROM", "traceID": "ffff", "spanID": "f1"},
                    {"refType": "CHILD_OF", "traceID": "abc123", "spanID": "a1"},
                ],
                "startTime": T0_US + 100, "duration": 1000,
                "tags": [
                    {"key": "span.kind", "type": "string", "value": "client"},
                    {"key": "error", "type": "bool", "value": True},
                    {"key": "otel.status_description", "type": "string", "value": "deadlock"},
                    {"key": "otel.scope.name", "type": "string", "value": "sqlx"},
                    {"key": "otel.scope.version", "type": "string", "value": "0.7"},
                    {"key": "w3c.tracestate", "type": "string", "value": "vendor=1"},
                ],
                "logs": [], "processID": "p2", "warnings": ["clock skew adjusted"],
            },
            {  # only a same-trace FOLLOWS_FROM: Jaeger draws that as the parent
                "traceID": "abc123", "spanID": "c3", "operationName": "publish",
                "references": [{"refType": "FOLLOWS_FROM", "traceID": "abc123", "spanID": "a1"}],
                "startTime": T0_US + 3000, "duration": 0, "tags": [], "processID": "p1",
            },
            "not a span",
        ],
        "processes": {
            "p1": {"serviceName": "cart", "tags": [
                {"key": "hostname", "type": "string", "value": "node-1"}]},
            "p2": {"serviceName": "cart-db", "tags": []},
        },
    }


@pytest.mark.parametrize("shape", ["download", "list", "bare"])
def test_jaeger_maps_every_field(tmp_path: Path, shape: str) -> None:
    trace = _jaeger_trace()
    doc: object = {"data": [trace, {"traceID": "x"}]} if shape == "download" else (
        [trace, {"traceID": "x"}] if shape == "list" else trace)
    decoded = jaeger.decode(orjson.dumps(doc), DecodeOptions())
    store, report = ingest(tmp_path, decoded, Format.JAEGER_JSON)
    with store:
        spans = spans_by_id(store)
        rejected = quarantine(store)
    tid = "00000000000000000000000000abc123"
    root, child, follower = (spans["00000000000000a1"], spans["00000000000000b2"],
                             spans["00000000000000c3"])
    assert (root["TraceId"], root["ParentSpanId"], root["SpanName"]) == (tid, "", "GET /cart")
    assert (root["Timestamp"], root["Duration"]) == (T0_NS, 2_500_000)
    assert root["SpanKind"] == "Server" and root["StatusCode"] == "Ok"
    assert root["ServiceName"] == "cart"
    assert root["ResourceAttributes"] == {"service.name": "cart", "hostname": "node-1"}
    assert root["SpanAttributes"] == {"http.status_code": "200", "cache.hit": "false",
                                      "ratio": "0.5"}
    assert root["Events"] == [{"Timestamp": T0_NS + 10_000, "Name": "cache miss",
                               "Attributes": {"key": "cart:7"}}]
    assert child["ParentSpanId"] == "00000000000000a1" and child["SpanKind"] == "Client"
    assert (child["StatusCode"], child["StatusMessage"]) == ("Error", "deadlock")
    assert (child["ScopeName"], child["ScopeVersion"], child["TraceState"]) == (
        "sqlx", "0.7", "vendor=1")
    assert child["SpanAttributes"] == {"jaeger.warnings": '["clock skew adjusted"]'}
    assert child["ServiceName"] == "cart-db"
    assert child["Links"] == [{"TraceId": "0" * 28 + "ffff", "SpanId": "00000000000000f1",
                               "TraceState": None,
                               "Attributes": {"opentracing.ref_type": "follows_from"}}]
    assert follower["ParentSpanId"] == "00000000000000a1" and follower["Links"] == []
    assert follower["Duration"] == 0 and follower["SpanKind"] == "Unspecified"
    if shape == "bare":
        assert [r[:2] for r in rejected] == [("trace 1 span 4", "bad_shape")]
    else:
        assert [r[:2] for r in rejected] == [("trace 1 span 4", "bad_shape"),
                                             ("trace 2", "bad_shape")]
    assert report.records_read == len(spans) + len(rejected)


def test_jaeger_unparsable_and_wrong_shape_documents(tmp_path: Path) -> None:
    broken = jaeger.decode(b'{"data": [', DecodeOptions())
    assert [(r.position, r.reason.value, r.raw) for r in broken.rejects] == [
        ("document", "unparsable", '{"data": [')]
    shape = jaeger.decode(b'{"total": 0}', DecodeOptions())
    assert [(r.position, r.reason.value) for r in shape.rejects] == [("document", "bad_shape")]
    store, report = ingest(tmp_path, broken, Format.JAEGER_JSON)
    with store:
        assert quarantine(store)[0][:2] == ("document", "unparsable")
    assert report.total_quarantined == 1 and report.total_stored == 0


# -- Zipkin ------------------------------------------------------------------------------------

FRONTEND = {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080}
ZIPKIN_SPANS: list[object] = [
    {"traceId": "463ac35c9f6413ad", "id": "72485a3953bb6124", "kind": "SERVER",
     "name": "get /api", "timestamp": T0_US, "duration": 207_000, "localEndpoint": FRONTEND,
     "tags": {"http.method": "GET", "http.path": "/api"},
     "annotations": [{"timestamp": T0_US + 5, "value": "wr"}]},
    {"traceId": "463ac35c9f6413ad", "id": "6b221d5bc9e6496c", "parentId": "72485a3953bb6124",
     "kind": "CLIENT", "name": "get /backend", "timestamp": T0_US + 10, "duration": 150_000,
     "localEndpoint": FRONTEND,
     "remoteEndpoint": {"serviceName": "backend", "ipv4": "10.0.0.2", "port": 9000},
     "tags": {"error": "connection refused"}},
    {"traceId": "463ac35c9f6413ad", "id": "6b221d5bc9e6496d", "parentId": "6b221d5bc9e6496c",
     "kind": "SERVER", "name": "get /backend", "timestamp": T0_US + 20, "duration": 100_000,
     "localEndpoint": {"serviceName": "backend"}, "shared": True,
     "tags": {"otel.status_code": "OK"}},
    {"traceId": "463ac35c9f6413ad", "id": "6b221d5bc9e6496e", "name": "no clock",
     "localEndpoint": FRONTEND},
    "not a span",
    {"traceId": "463ac35c9f6413ad", "id": "6b221d5bc9e6496f", "parentId": "72485a3953bb6124",
     "kind": "PRODUCER", "name": "enqueue", "timestamp": T0_US + 30,
     "localEndpoint": FRONTEND, "tags": {"error": "true"}},
]


def test_zipkin_maps_every_field(tmp_path: Path) -> None:
    decoded = zipkin.decode(orjson.dumps(ZIPKIN_SPANS), DecodeOptions())
    store, report = ingest(tmp_path, decoded, Format.ZIPKIN_JSON)
    with store:
        spans = spans_by_id(store)
        rejected = quarantine(store)
    tid = "0000000000000000463ac35c9f6413ad"  # 64-bit trace id, left-padded
    server, client = spans["72485a3953bb6124"], spans["6b221d5bc9e6496c"]
    shared, producer = spans["6b221d5bc9e6496d"], spans["6b221d5bc9e6496f"]
    assert {s["TraceId"] for s in spans.values()} == {tid}
    assert (server["SpanName"], server["SpanKind"], server["ParentSpanId"]) == (
        "get /api", "Server", "")
    assert (server["Timestamp"], server["Duration"]) == (T0_NS, 207_000_000)
    assert server["ServiceName"] == "frontend" and server["StatusCode"] == "Unset"
    assert server["ResourceAttributes"] == {"service.name": "frontend",
                                            "net.host.ip": "10.0.0.1", "net.host.port": "8080"}
    assert server["SpanAttributes"] == {"http.method": "GET", "http.path": "/api"}
    assert server["Events"] == [{"Timestamp": T0_NS + 5000, "Name": "wr", "Attributes": {}}]
    assert (client["ParentSpanId"], client["SpanKind"]) == ("72485a3953bb6124", "Client")
    assert (client["StatusCode"], client["StatusMessage"]) == ("Error", "connection refused")
    assert client["SpanAttributes"] == {"peer.service": "backend", "net.peer.ip": "10.0.0.2",
                                        "net.peer.port": "9000"}
    assert shared["StatusCode"] == "Ok" and shared["ServiceName"] == "backend"
    assert shared["SpanAttributes"] == {"zipkin.shared": "true"}
    # No duration: an instant span, kept. A bare `error` tag: Error without a message.
    assert (producer["SpanKind"], producer["Duration"]) == ("Producer", 0)
    assert (producer["StatusCode"], producer["StatusMessage"]) == ("Error", "")
    assert [r[:2] for r in rejected] == [("span 4", "bad_timestamp"), ("span 5", "bad_shape")]
    assert report.records_read == len(ZIPKIN_SPANS) == len(spans) + len(rejected)


def test_zipkin_trace_lists_and_broken_documents(tmp_path: Path) -> None:
    traces = [[ZIPKIN_SPANS[0]], [ZIPKIN_SPANS[1], 42]]
    decoded = zipkin.decode(orjson.dumps(traces), DecodeOptions())
    assert decoded.spans[0].column("Pos").to_pylist() == ["trace 1 span 1", "trace 2 span 1"]
    assert [(r.position, r.reason.value, r.raw) for r in decoded.rejects] == [
        ("trace 2 span 2", "bad_shape", "42")]
    single = zipkin.decode(orjson.dumps(ZIPKIN_SPANS[0]), DecodeOptions())
    assert single.spans[0].column("SpanId").to_pylist() == ["72485a3953bb6124"]
    assert zipkin.decode(b"[{", DecodeOptions()).rejects[0].reason.value == "unparsable"
    assert zipkin.decode(b'"spans"', DecodeOptions()).rejects[0].reason.value == "bad_shape"
    latin1 = zipkin.decode(b'[{"name": "caf\xe9"}]', DecodeOptions()).rejects
    assert [(r.position, r.reason.value) for r in latin1] == [("document", "bad_encoding")]
