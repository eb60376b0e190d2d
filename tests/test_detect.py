"""Input format auto-detection from a source's first bytes."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (
    OTLP_DIR,
    T0,
    delimited,
    json_to_proto,
    jsonl,
    requires_shared_otlp,
    sid,
    span,
    tid,
    trace_request,
)
from telltale.model import Format
from telltale.normalize.detect import HEAD_BYTES, DetectionError, detect


def _requests(n: int) -> list[dict[str, Any]]:
    return [trace_request([span(tid(i + 1), sid(1), f"op-{i}", start=T0 + i,
                                attributes={"http.route": "/a", "n": i})]) for i in range(n)]


def _logs_request() -> dict[str, Any]:
    return {"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": [
        {"timeUnixNano": str(T0), "severityNumber": 9, "body": {"stringValue": "hello"}}]}]}]}


def _jaeger() -> dict[str, Any]:
    return {"data": [{
        "traceID": "83a9efd15c1c98a977e0711cc93ee28b",
        "spans": [{"traceID": "83a9efd15c1c98a977e0711cc93ee28b", "spanID": "e127af99e3b3e074",
                   "operationName": "GET /", "references": [], "startTime": 1706678909209712,
                   "duration": 123, "tags": [], "logs": [], "processID": "p1"}],
        "processes": {"p1": {"serviceName": "web", "tags": []}},
    }], "total": 0, "limit": 0, "offset": 0, "errors": None}


def _zipkin() -> list[dict[str, Any]]:
    return [{"traceId": "5b8efff798038103d269b633813fc60c", "id": "eee19b7ec3c1b174",
             "parentId": "eee19b7ec3c1b173", "name": "get /api", "timestamp": 1544712660000000,
             "duration": 1000, "kind": "SERVER", "localEndpoint": {"serviceName": "web"}}
            for _ in range(2)]


def _csv() -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["TraceID", "SpanID", "ParentID", "OperationName", "StartTimeUnixNano",
                "EndTimeUnixNano"])
    for i in range(5):
        w.writerow([tid(1), sid(i + 2), sid(1), f"op{i}", T0 + i, T0 + i + 10])
    return out.getvalue().encode()


def _events() -> bytes:
    return b"".join(orjson.dumps({"ts": f"2025-01-01T00:00:0{i}Z", "event": "spawn",
                                  "agent": f"worker-{i}", "model": "m1", "ok": True}) + b"\n"
                    for i in range(6))


CASES: list[tuple[str, bytes, Format]] = [
    ("otlp json pretty", orjson.dumps(_requests(3)[0], option=orjson.OPT_INDENT_2),
     Format.OTLP_JSON),
    ("otlp json pretty with leading blank lines",
     b"\n\n  " + orjson.dumps(_logs_request(), option=orjson.OPT_INDENT_2), Format.OTLP_JSON),
    ("otlp json compact single", orjson.dumps(_requests(1)[0]), Format.OTLP_JSON),
    ("otlp json lines", jsonl(_requests(10)), Format.OTLP_JSON),
    ("otlp json lines, mixed signals", jsonl([*_requests(3), _logs_request()]), Format.OTLP_JSON),
    ("otlp json lines, garbage first", b"\x01\x02garbage\n{}\n{\"half\": \n"
     + jsonl(_requests(8)), Format.OTLP_JSON),
    ("otlp json lines, torn with NULs and bad bytes",
     b'{"resourceSpans":[' + b"\x00" * 40 + b"\n\xff\xfe\xfd\n" + jsonl(_requests(6)),
     Format.OTLP_JSON),
    ("otlp protobuf single", json_to_proto(_requests(5)[0]).SerializeToString(),
     Format.OTLP_PROTO),
    ("otlp protobuf delimited",
     delimited([json_to_proto(r) for r in _requests(4)]), Format.OTLP_PROTO),
    ("otlp protobuf logs", json_to_proto(_logs_request()).SerializeToString(), Format.OTLP_PROTO),
    ("jaeger ui json pretty", orjson.dumps(_jaeger(), option=orjson.OPT_INDENT_2),
     Format.JAEGER_JSON),
    ("jaeger ui json compact", orjson.dumps(_jaeger()), Format.JAEGER_JSON),
    ("zipkin v2 array", orjson.dumps(_zipkin()), Format.ZIPKIN_JSON),
    ("zipkin v2 array pretty", orjson.dumps(_zipkin(), option=orjson.OPT_INDENT_2),
     Format.ZIPKIN_JSON),
    ("csv with header", _csv(), Format.CSV_SPANS),
    ("csv with BOM-less semicolon-free header and CRLF", _csv().replace(b"\r\n", b"\n"),
     Format.CSV_SPANS),
    ("events json lines", _events(), Format.EVENTS_JSONL),
    ("nezha container logs", b"Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,SpanID,Log\n"
     b'2023-01-29T09:33:16.822108812Z,1674984796822108812,10.0.0.1,ts-order-6c-h7,server,'
     + tid(1).encode() + b"," + sid(2).encode() + b',"{""log"":""17:33:16.821 INFO  x""}"\n',
     Format.NEZHA_LOGS),
    ("nezha pod metrics", b"Time,TimeStamp,PodName,CpuUsage(m),MemoryUsage(Mi)\n"
     b"2023-01-29 08:41:09.1 +0000 UTC m=+0.18,1674981669,ts-admin-84-7n,0,340.9\n",
     Format.NEZHA_METRICS),
    ("nezha service metrics", b"Time,TimeStamp,ServiceName,SuccessRate(%),LatencyP50(s)\n"
     b"2023-01-29 08:41:09.0 +0000 UTC m=+0.11,1674981669,Frontend,0,0.09\n",
     Format.NEZHA_METRICS),
]


@pytest.mark.parametrize(("label", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_detects(label: str, data: bytes, expected: Format) -> None:
    found = detect(data[:HEAD_BYTES], "input")
    assert found.format is expected, found.evidence
    assert found.evidence


def test_majority_vote_is_reported() -> None:
    data = b"not json at all\n" * 2 + jsonl(_requests(6))
    found = detect(data)
    assert found.format is Format.OTLP_JSON
    assert "otlp-json" in found.evidence


def test_only_the_head_is_needed() -> None:
    """Detection sees at most HEAD_BYTES: a long file detects from its beginning."""
    data = jsonl(_requests(2000))
    assert len(data) > HEAD_BYTES
    assert detect(data[:HEAD_BYTES]).format is Format.OTLP_JSON


@requires_shared_otlp
@pytest.mark.parametrize(("name", "expected"), [
    ("otel-proto_examples_trace.json", Format.OTLP_JSON),
    ("otel-proto_examples_metrics.json", Format.OTLP_JSON),
    ("jaeger_fixture_otlp2jaeger-out.jaegerjson.json", Format.JAEGER_JSON),
])
def test_detects_real_files(name: str, expected: Format) -> None:
    assert detect((OTLP_DIR / name).read_bytes()[:HEAD_BYTES]).format is expected


@pytest.mark.parametrize("data", [b"", b"   \n\n\t  \n"], ids=["empty", "whitespace"])
def test_empty_input_raises(data: bytes) -> None:
    with pytest.raises(DetectionError, match="empty"):
        detect(data)


@pytest.mark.parametrize("data", [b"hello world\nthis is prose\n", b"[1, 2, 3]",
                                  b"just one line"], ids=["prose", "number array", "one line"])
def test_unrecognised_input_raises_with_a_hint(data: bytes) -> None:
    with pytest.raises(DetectionError) as info:
        detect(data, "notes.txt")
    assert "\n" not in str(info.value)


def test_protobuf_with_long_string_attributes() -> None:
    stmt = ("SELECT id, name, email, created_at FROM users WHERE tenant_id = $1 "
            "AND status = 'active' ORDER BY created_at DESC LIMIT 100 ") * 8
    req = trace_request([span(tid(i + 1), sid(i + 1), "db.query", start=T0 + i,
                              attributes={"db.statement": stmt}) for i in range(20)])
    assert detect(json_to_proto(req).SerializeToString()).format is Format.OTLP_PROTO


_hex16 = st.binary(min_size=8, max_size=8).filter(any)
_hex32 = st.binary(min_size=16, max_size=16).filter(any)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_hex32, _hex16, st.text(min_size=1, max_size=40),
                          st.integers(T0 - 10**17, T0 + 10**16),
                          st.dictionaries(st.text(max_size=20), st.text(max_size=40),
                                          max_size=4)),
                min_size=1, max_size=5),
       st.booleans())
def test_protobuf_is_never_taken_for_text(spans: list[tuple[bytes, bytes, str, int,
                                                            dict[str, str]]],
                                          framed: bool) -> None:
    req = trace_request([span(t.hex(), s.hex(), name, start=start, attributes=attrs)
                         for t, s, name, start, attrs in spans])
    msg = json_to_proto(req)
    data = delimited([msg, msg]) if framed else msg.SerializeToString()
    assert detect(data).format is Format.OTLP_PROTO
