"""Fuzzing the OTLP receiver: mutated protobuf and JSON request bodies for every signal.

Two layers, both fed by the same hypothesis strategies:
- the decode path the committer runs (`decode_group` then `Store.commit_parts`) on groups of one
  to four parts, checking every part's report against an independent count of the records in
  its body and against the rows the store really holds for its batch;
- the real receiver (`telltale serve` as a subprocess), checking every response is a 200 or a
  400 with a reason, never a 5xx, and that the server still drains and exits cleanly.

Valid requests are built as protobuf messages; JSON bodies are their OTLP/JSON mapping (hex ids).
Mutations: bit flips, truncation, inserted random bytes, corrupted length prefixes (protobuf);
random text edits, wrong value types, huge numbers, invalid hex ids, deep nesting, renamed keys
and another signal's request (JSON).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from conftest import NOW_NS, T0, pinned_settings
from telltale.model import QuarantineReason, Signal
from telltale.serve.decode import JSON, PROTOBUF, Part, decode_group
from telltale.store import Store

# When a property fails, hypothesis' pytest plugin imports its patch writer (libcst, when
# installed), whose import warns a DeprecationWarning from mypy_extensions outside any test; with
# `filterwarnings = error` that turns the failure report into an INTERNALERROR. Import it now,
# quietly, so a failure is reported as one.
with contextlib.suppress(ImportError), warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

REQUESTS: dict[Signal, type[Message]] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
}
RESPONSES: dict[Signal, type[Message]] = {
    Signal.TRACES: ExportTraceServiceResponse,
    Signal.LOGS: ExportLogsServiceResponse,
    Signal.METRICS: ExportMetricsServiceResponse,
}
SIGNALS = list(Signal)
# Rows held in the signal tables, all of them and for one batch.
HELD_SQL = """SELECT count(*) FROM (
    SELECT BatchId FROM otel_traces UNION ALL SELECT BatchId FROM otel_logs
    UNION ALL SELECT BatchId FROM otel_metrics_gauge UNION ALL SELECT BatchId FROM otel_metrics_sum
    UNION ALL SELECT BatchId FROM otel_metrics_histogram
    UNION ALL SELECT BatchId FROM otel_metrics_exponential_histogram
    UNION ALL SELECT BatchId FROM otel_metrics_summary)"""
BATCH_HELD_SQL = """SELECT count(*) FROM (
    SELECT BatchId FROM otel_traces UNION ALL SELECT BatchId FROM otel_logs
    UNION ALL SELECT BatchId FROM otel_metrics_gauge UNION ALL SELECT BatchId FROM otel_metrics_sum
    UNION ALL SELECT BatchId FROM otel_metrics_histogram
    UNION ALL SELECT BatchId FROM otel_metrics_exponential_histogram
    UNION ALL SELECT BatchId FROM otel_metrics_summary) WHERE BatchId = ?"""

# -- valid requests ---------------------------------------------------------------------------

_ids = st.one_of(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8),
                 st.just(b""), st.binary(max_size=20))
_times = st.one_of(st.integers(T0, T0 + 10**12), st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1,
                                                                    NOW_NS + 10**15]))
_text = st.text(max_size=12)
_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**63), 2**63 - 1))


def _any_value(value: Any) -> AnyValue:
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, list):
        out.array_value.values.extend(_any_value(v) for v in value)
    elif isinstance(value, dict):
        out.kvlist_value.values.extend(KeyValue(key=k, value=_any_value(v)) for k, v in value.items())
    elif value is not None:
        out.string_value = str(value)
    return out


_leaf = st.one_of(_text, st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(),
                  st.binary(max_size=8), st.none())
_plain = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(_text, inner, max_size=3)),
                      max_leaves=6)
_attributes = st.lists(st.tuples(_text, _plain), max_size=4).map(
    lambda kvs: [KeyValue(key=k, value=_any_value(v)) for k, v in kvs])


@st.composite
def _resource(draw: st.DrawFn) -> dict[str, Any]:
    attributes = [KeyValue(key="service.name", value=_any_value(draw(_text)))] if draw(
        st.booleans()) else []
    return {"attributes": attributes + draw(_attributes)}


@st.composite
def trace_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(draw(_resource())["attributes"])
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = draw(_text), draw(_text)
            for _ in range(draw(st.integers(0, 3))):
                span = ss.spans.add()
                span.trace_id, span.span_id, span.parent_span_id = draw(_ids), draw(_ids), draw(_ids)
                span.name, span.trace_state = draw(_text), draw(_text)
                span.kind = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 99]))  # type: ignore[assignment]
                span.start_time_unix_nano = draw(_times)
                span.end_time_unix_nano = draw(st.one_of(
                    _times, st.just(min(span.start_time_unix_nano + 5, 2**64 - 1))))
                span.attributes.extend(draw(_attributes))
                span.status.code = draw(st.sampled_from([0, 1, 2, 7]))  # type: ignore[assignment]
                span.status.message = draw(_text)
                for _ in range(draw(st.integers(0, 2))):
                    event = span.events.add(time_unix_nano=draw(_times), name=draw(_text))
                    event.attributes.extend(draw(_attributes))
                for _ in range(draw(st.integers(0, 1))):
                    link = span.links.add(trace_id=draw(_ids), span_id=draw(_ids))
                    link.attributes.extend(draw(_attributes))
    return req


@st.composite
def log_requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rl = req.resource_logs.add(schema_url=draw(_text))
        rl.resource.attributes.extend(draw(_resource())["attributes"])
        for _ in range(draw(st.integers(0, 2))):
            sl = rl.scope_logs.add()
            sl.scope.name = draw(_text)
            sl.scope.attributes.extend(draw(_attributes))
            for _ in range(draw(st.integers(0, 3))):
                rec = sl.log_records.add(time_unix_nano=draw(_times),
                                         observed_time_unix_nano=draw(_times),
                                         severity_text=draw(_text), trace_id=draw(_ids),
                                         span_id=draw(_ids), event_name=draw(_text),
                                         flags=draw(st.integers(0, 2**32 - 1)))
                rec.severity_number = draw(st.sampled_from([0, 1, 9, 17, 24, 99]))  # type: ignore[assignment]
                rec.body.CopyFrom(_any_value(draw(_plain)))
                rec.attributes.extend(draw(_attributes))
    return req


@st.composite
def _metric(draw: st.DrawFn, metric: Any) -> None:
    metric.name, metric.unit = draw(_text), draw(_text)
    kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exponential_histogram", "summary",
                                 None]))
    if kind is None:
        return
    data = getattr(metric, kind)
    data.SetInParent()
    for _ in range(draw(st.integers(0, 3))):
        point = data.data_points.add(time_unix_nano=draw(_times),
                                     start_time_unix_nano=draw(_times))
        point.attributes.extend(draw(_attributes))
        value = draw(_numbers)
        if kind in ("gauge", "sum"):
            if isinstance(value, int):
                point.as_int = value
            else:
                point.as_double = value
        elif kind == "histogram":
            point.count = draw(st.integers(0, 2**64 - 1))
            point.bucket_counts.extend(draw(st.lists(st.integers(0, 2**64 - 1), max_size=3)))
            point.explicit_bounds.extend(draw(st.lists(st.floats(), max_size=2)))
            point.sum = float(value)
        elif kind == "exponential_histogram":
            point.scale = draw(st.integers(-(2**31), 2**31 - 1))
            point.positive.bucket_counts.extend(draw(st.lists(st.integers(0, 2**64 - 1), max_size=3)))
        else:
            point.count = draw(st.integers(0, 2**64 - 1))
            point.quantile_values.add(quantile=draw(st.floats()), value=float(value))
    if kind == "sum":
        data.is_monotonic = draw(st.booleans())
        data.aggregation_temporality = draw(st.sampled_from([0, 1, 2, 9]))
    return


@st.composite
def metric_requests(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rm = req.resource_metrics.add()
        rm.resource.attributes.extend(draw(_resource())["attributes"])
        for _ in range(draw(st.integers(0, 2))):
            sm = rm.scope_metrics.add()
            sm.scope.name = draw(_text)
            for _ in range(draw(st.integers(0, 3))):
                draw(_metric(sm.metrics.add()))
    return req


VALID = {Signal.TRACES: trace_requests(), Signal.LOGS: log_requests(),
         Signal.METRICS: metric_requests()}


def record_count(req: Message) -> int:
    """Records in a request as the receiver counts them: spans, log records, and metric data
    points (a metric without a data type is one record, quarantined)."""
    if isinstance(req, ExportTraceServiceRequest):
        return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    if isinstance(req, ExportLogsServiceRequest):
        return sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)
    assert isinstance(req, ExportMetricsServiceRequest)
    n = 0
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                n += 1 if kind is None else len(getattr(metric, kind).data_points)
    return n


# -- protobuf mutations -----------------------------------------------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int] | None:
    value = shift = 0
    while i < len(buf) and shift < 70:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7
    return None


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def length_fields(buf: bytes, base: int = 0, depth: int = 0) -> list[tuple[int, int, int]] | None:
    """(offset, size, value) of the length prefix of every length-delimited field, recursively
    into payloads that parse as messages; None when `buf` is not a well-formed message."""
    out: list[tuple[int, int, int]] = []
    i = 0
    while i < len(buf):
        key = _varint(buf, i)
        if key is None or key[0] >> 3 == 0:
            return None
        tag, i = key
        wire = tag & 7
        if wire == 0:
            v = _varint(buf, i)
            if v is None:
                return None
            i = v[1]
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n = _varint(buf, i)
            if n is None or n[1] + n[0] > len(buf):
                return None
            out.append((base + i, n[1] - i, n[0]))
            start, i = n[1], n[1] + n[0]
            if depth < 12:
                out += length_fields(buf[start:i], base + start, depth + 1) or []
        else:
            return None
        if i > len(buf):
            return None
    return out


_BIG_LENGTHS = [0, 1, 127, 128, 2**31 - 1, 2**31, 2**32, 2**63, 2**64 - 1]


@dataclass(frozen=True)
class Mutation:
    kind: str
    where: int  # a position, scaled to the body's length when applied
    amount: int
    data: bytes


_mutations = st.builds(
    Mutation,
    st.sampled_from(["flip", "truncate", "insert", "length", "length", "delete", "duplicate",
                     "overwrite"]),
    st.integers(0, 2**32), st.integers(-300, 300) | st.sampled_from(_BIG_LENGTHS),
    st.binary(min_size=1, max_size=16))


def mutate_proto(body: bytes, mutations: list[Mutation]) -> bytes:
    for m in mutations:
        n = len(body)
        if m.kind == "length":
            fields = length_fields(body)
            if fields:
                offset, size, value = fields[m.where % len(fields)]
                new = m.amount if m.amount in _BIG_LENGTHS else max(0, value + m.amount)
                body = body[:offset] + _encode_varint(new) + body[offset + size:]
                continue
        if n == 0:
            body = m.data
        elif m.kind == "flip":
            bit = m.where % (n * 8)
            body = body[:bit // 8] + bytes([body[bit // 8] ^ (1 << bit % 8)]) + body[bit // 8 + 1:]
        elif m.kind == "truncate":
            body = body[:m.where % n]
        elif m.kind in ("insert", "length"):
            at = m.where % (n + 1)
            body = body[:at] + m.data + body[at:]
        elif m.kind == "delete":
            at = m.where % n
            body = body[:at] + body[at + abs(m.amount) % 32 + 1:]
        elif m.kind == "duplicate":
            at = m.where % n
            body = body[:at] + body[at:at + abs(m.amount) % 64 + 1] + body[at:]
        else:
            at = m.where % n
            body = body[:at] + m.data + body[at + len(m.data):]
    return body


# -- JSON: the OTLP/JSON mapping and its mutations --------------------------------------------

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _b64_ids_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: base64.b64decode(v).hex() if k in _ID_KEYS and isinstance(v, str)
                else _b64_ids_to_hex(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_b64_ids_to_hex(v) for v in node]
    return node


def otlp_json(req: Message) -> dict[str, Any]:
    """The OTLP/JSON mapping: the protobuf JSON mapping with hex ids and integer enums."""
    doc = json_format.MessageToDict(req, use_integers_for_enums=True)
    return dict(_b64_ids_to_hex(doc))


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


_WRONG_TYPES: list[Any] = ["x", "", 0, -1, 1.5, True, False, None, [], {}, [1, "a"], {"a": 1},
                           [None], [{}], {"values": 5}]
_HUGE: list[Any] = [10**30, -(10**30), 2**64, 2**63, -(2**63) - 1, 1e308, -1e308, 5e-324,
                    "18446744073709551616", "99999999999999999999999", "-1", "1e400", "NaN",
                    float("nan"), float("inf")]
_BAD_IDS: list[Any] = ["zz" * 16, "abc", "a" * 33, "A" * 32, "", "é" * 16, " " * 32,
                       "0x" + "1" * 30, "0" * 32, "0" * 16, "g" * 16, 12345, "1" * 16 + "\x00" * 16,
                       "AAAAAAAAAAAAAAAAAAAAAA==", "\\u0000" * 4]
_RENAMES = {"resourceSpans": "resource_spans", "scopeSpans": "scope_spans", "spans": "Spans",
            "logRecords": "log_records", "dataPoints": "data_points", "attributes": "attrs",
            "resourceMetrics": "resourceLogs", "resourceLogs": "resourceSpans",
            "startTimeUnixNano": "start_time_unix_nano", "traceId": "trace_id", "gauge": "sum"}


def _deep(depth: int, style: int) -> str:
    """JSON text nested `depth` levels (written as text: deeper than Python's recursion)."""
    if style == 0:
        return '{"arrayValue":{"values":[' * depth + '{"stringValue":"leaf"}' + "]}}" * depth
    if style == 1:
        return ('{"kvlistValue":{"values":[{"key":"k","value":' * depth + '{"intValue":"1"}'
                + "}]}}" * depth)
    return "[" * depth + "1" + "]" * depth


@dataclass(frozen=True)
class JsonEdit:
    kind: str
    where: int
    choice: int
    data: str


_json_edits = st.builds(
    JsonEdit,
    st.sampled_from(["wrong_type", "huge", "bad_id", "deep", "rename", "drop", "wrap",
                     "text_delete", "text_insert", "text_replace", "pretty", "signal"]),
    st.integers(0, 2**32), st.integers(0, 2**16),
    st.text(max_size=6) | st.sampled_from(['"', "{", "}", "[", "]", ",", ":", "\n", "\\", "\x00",
                                          "\ud800", "1e999", '"spanId":']))


def mutate_json(doc: dict[str, Any], edits: list[JsonEdit]) -> bytes:
    """Structural edits on the document, then text edits on its serialization (big integers
    and NaN are written as Python's json writes them: invalid or out-of-range on purpose)."""
    tree: Any = doc
    text_edits: list[JsonEdit] = []
    deep: list[str] = []
    pretty = False
    for e in edits:
        paths = list(_paths(tree))
        path = paths[e.where % len(paths)]
        if e.kind == "wrong_type":
            # A copy: the shared lists and dicts must never end up inside each other (a cycle)
            # or carry one example's edits into the next.
            tree = _set(tree, path, copy.deepcopy(_WRONG_TYPES[e.choice % len(_WRONG_TYPES)]))
        elif e.kind == "huge":
            numeric = [p for p in paths if p and isinstance(p[-1], str) and (
                p[-1].endswith("UnixNano") or p[-1] in ("intValue", "asInt", "asDouble", "count",
                                                        "kind", "code", "severityNumber"))]
            target = numeric[e.where % len(numeric)] if numeric else path
            tree = _set(tree, target, _HUGE[e.choice % len(_HUGE)])
        elif e.kind == "bad_id":
            ids = [p for p in paths if p and p[-1] in _ID_KEYS]
            target = ids[e.where % len(ids)] if ids else (*path[:-1], "traceId") if path else path
            if target and isinstance(_get(tree, target[:-1]), dict):
                tree = _set(tree, target, _BAD_IDS[e.choice % len(_BAD_IDS)])
        elif e.kind == "deep":
            values = [p for p in paths if p and p[-1] in ("value", "body")] or [path]
            # A placeholder, replaced by the nested text after serialization.
            deep.append(_deep(e.choice % 1100 // (1 + 2 * (e.choice % 3 < 2)) + 1, e.choice % 3))
            tree = _set(tree, values[e.where % len(values)], f"@@deep{len(deep) - 1}@@")
        elif e.kind == "rename":
            keyed = [p for p in paths if p and p[-1] in _RENAMES]
            if keyed:
                target = keyed[e.where % len(keyed)]
                parent = _get(tree, target[:-1])
                parent[_RENAMES[target[-1]]] = parent.pop(target[-1])
        elif e.kind == "drop":
            if path and isinstance(_get(tree, path[:-1]), dict):
                del _get(tree, path[:-1])[path[-1]]
        elif e.kind == "wrap":
            tree = _set(tree, path, [_get(tree, path)] if e.choice % 2 else {"v": _get(tree, path)})
        elif e.kind == "signal":
            if isinstance(tree, dict) and tree:
                key = next(iter(tree))
                other = ["resourceSpans", "resourceLogs", "resourceMetrics"][e.choice % 3]
                tree = {other: tree[key], **{k: v for k, v in tree.items() if k != key}}
        elif e.kind == "pretty":
            pretty = True
        else:
            text_edits.append(e)
    text = json.dumps(tree, indent=1 if pretty else None, separators=None if pretty else (",", ":"))
    for i, nested in enumerate(deep):
        text = text.replace(f'"@@deep{i}@@"', nested)
    for e in text_edits:
        at = e.where % (len(text) + 1)
        if e.kind == "text_delete":
            text = text[:at] + text[at + e.choice % 16 + 1:]
        elif e.kind == "text_insert":
            text = text[:at] + e.data + text[at:]
        else:
            text = text[:at] + e.data + text[at + len(e.data):]
    return text.encode("utf-8", errors="surrogatepass")


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


# Containers per signal, in the OTLP/JSON spelling (metrics: the protobuf JSON parser also takes
# the proto field names).
_LEVELS = {Signal.TRACES: [("resourceSpans",), ("scopeSpans",), ("spans",)],
           Signal.LOGS: [("resourceLogs",), ("scopeLogs",), ("logRecords",)],
           Signal.METRICS: [("resourceMetrics", "resource_metrics"),
                            ("scopeMetrics", "scope_metrics"), ("metrics",)]}
_METRIC_DATA = [("gauge",), ("sum",), ("histogram",), ("exponentialHistogram", "exponential_histogram"),
                ("summary",)]


# Keys that only a record (or a metric's data) carries: a mistyped container holding one of
# these may hide records, and the request must then not pass as if it had none.
_RECORD_KEYS = {
    Signal.TRACES: {"spanId", "traceId", "startTimeUnixNano", "endTimeUnixNano"},
    Signal.LOGS: {"timeUnixNano", "observedTimeUnixNano", "body", "severityText", "severityNumber"},
    Signal.METRICS: {"dataPoints", "data_points", "asInt", "asDouble", "timeUnixNano", "gauge", "sum",
                     "histogram", "summary", "exponentialHistogram", "exponential_histogram"},
}


def _holds_records(node: Any, keys: set[str]) -> bool:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if keys & item.keys():
                return True
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return False


def _field(obj: dict[str, Any], names: tuple[str, ...]) -> tuple[bool, Any]:
    """(well-formed, value) of a field that may be spelled several ways (absent/null → [])."""
    present = [n for n in names if n in obj]
    if len(present) > 1:
        return False, None
    value = obj.get(present[0]) if present else None
    return True, [] if value is None else value


def json_records(signal: Signal, doc: dict[str, Any]) -> tuple[int, bool]:
    """Records in an OTLP/JSON request reachable through well-typed containers, and whether
    a mistyped container (or an ambiguous metric) may hide more."""
    keys = _RECORD_KEYS[signal]
    hidden = False
    level: list[Any] = [doc]
    for names in _LEVELS[signal]:
        children: list[Any] = []
        for obj in level:
            if not isinstance(obj, dict):
                hidden |= _holds_records(obj, keys)
                continue
            ok, value = _field(obj, names)
            if not ok or not isinstance(value, list):
                hidden |= _holds_records(obj if not ok else value, keys)
                continue
            children += value
        level = children
    if signal is not Signal.METRICS:
        return len(level), hidden
    n = 0
    for metric in level:
        if not isinstance(metric, dict):
            n += 1  # the protobuf JSON parser reads a string as an empty metric (no data)
            hidden |= _holds_records(metric, keys)
            continue
        kinds = [metric[name] for names in _METRIC_DATA for name in names
                 if metric.get(name) is not None]
        if not kinds:
            n += 1
        elif len(kinds) > 1:
            hidden = True  # a oneof set twice: the whole request is refused
        elif isinstance(kinds[0], dict):
            ok, points = _field(kinds[0], ("dataPoints", "data_points"))
            if ok and isinstance(points, list):
                n += len(points)
            else:
                hidden |= _holds_records(kinds[0], keys)
        else:
            hidden |= _holds_records(kinds[0], keys)
    return n, hidden


# -- test inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    signal: Signal  # the endpoint it is sent to
    content_type: str
    data: bytes
    pristine: bool = False  # a well-formed request of this signal, not mutated

    def expected(self) -> tuple[int, bool] | None:
        """(records, whether more may hide in mistyped containers) by the reference parsers
        (upb, orjson); None when they refuse the body."""
        if self.content_type == PROTOBUF:
            try:
                return record_count(REQUESTS[self.signal].FromString(self.data)), False
            except DecodeError:
                return None
        try:
            doc = orjson.loads(self.data) if self.data.strip() else {}
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        if _LEVELS[self.signal][0][0] not in doc:  # OTLP/JSON's spelling only
            return 0, False
        return json_records(self.signal, doc)

    def json_object(self) -> bool:
        try:
            return isinstance(orjson.loads(self.data), dict) if self.data.strip() else True
        except orjson.JSONDecodeError:
            return False


@st.composite
def bodies(draw: st.DrawFn, mutated: bool = True) -> Body:
    made_as = draw(st.sampled_from(SIGNALS))
    # Mostly sent to its own endpoint; sometimes to another signal's.
    sent_to = made_as if draw(st.integers(0, 4)) else draw(st.sampled_from(SIGNALS))
    req = draw(VALID[made_as])
    if draw(st.booleans()):
        data = req.SerializeToString()
        if mutated:
            data = mutate_proto(data, draw(st.lists(_mutations, min_size=1, max_size=3)))
        return Body(sent_to, PROTOBUF, data, pristine=not mutated and sent_to is made_as)
    edits = draw(st.lists(_json_edits, min_size=1, max_size=3)) if mutated else []
    return Body(sent_to, JSON, mutate_json(otlp_json(req), edits),
                pristine=not mutated and sent_to is made_as)


# -- the decode path --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One store for every example: each part is its own batch (opening a store is slow)."""
    db = tmp_path_factory.mktemp("fuzz") / "f.duckdb"
    with Store(db, settings=pinned_settings(db)) as store:
        yield store


def _batch(store: Store, batch: int) -> tuple[tuple[int, int, int], int, dict[str, int]]:
    """What the store holds for one batch: its ingest row (read, stored, quarantined), the rows
    in the signal tables, and the quarantine rows by reason."""
    row = store.query("SELECT RecordsRead, Stored, Quarantined FROM telltale_ingest_batches "
                      "WHERE BatchId = ?", [batch])
    assert row, f"batch {batch} has no ingest row"
    held = int(store.query(BATCH_HELD_SQL, [batch])[0][0])
    reasons = dict(store.query("SELECT Reason, count(*) FROM telltale_quarantine WHERE BatchId = ? "
                               "GROUP BY Reason", [batch]))
    read, stored, quarantined = (int(v) for v in row[0])
    return (read, stored, quarantined), held, {str(k): int(v) for k, v in reasons.items()}


def check_group(store: Store, group: list[Body]) -> None:
    """Decode and commit a group as the committer does, then judge each part on what the store
    holds for its batch (a part whose bytes an earlier example committed is judged on that
    batch, so a replayed example sees the same facts)."""
    parts = [Part(b.signal, b.data, b.content_type, "otlp-http") for b in group]
    decoded, sources, undecodable = decode_group(parts)
    reports = store.commit_parts(decoded, sources)
    assert len(reports) == len(group)
    for i, (body, report) in enumerate(zip(group, reports, strict=True)):
        assert report.batch_id is not None
        (read, stored, quarantined), held, reasons = _batch(store, report.batch_id)
        if not report.already_ingested:
            assert (read, stored, quarantined) == (
                report.records_read, report.total_stored, report.total_quarantined)
        assert read == stored + quarantined
        assert (held, sum(reasons.values())) == (stored, quarantined), (
            f"part {i}: batch {report.batch_id} says stored {stored} quarantined {quarantined}, "
            f"the store holds {held} rows and {sum(reasons.values())} quarantined")
        expected = body.expected()
        reason = undecodable.get(i)
        where = f"part {i} ({body.signal}, {body.content_type}, batch {report.batch_id})"
        if reason is not None:  # answered 400: the body is kept in quarantine, nothing stored
            assert reason.strip()
            assert (stored, reasons) == (0, {QuarantineReason.UNPARSABLE.value: 1}), where
            assert not body.pristine, f"{where}: a well-formed request refused: {reason}"
            continue
        if body.content_type == JSON:
            assert body.json_object(), f"{where}: no JSON object, yet not refused (400)"
        if expected is None:
            # Reachable only for protobuf traces that ptars accepts and upb refuses.
            assert body.content_type == PROTOBUF and body.signal is Signal.TRACES, where
            continue
        records, hidden = expected
        whole_request_quarantined = stored == 0 and quarantined == 1
        if hidden:  # records may hide in a mistyped container: they must not vanish
            assert whole_request_quarantined or read > records, (
                f"{where}: {records} well-typed records and more in mistyped containers; "
                f"stored {stored}, quarantined {reasons}")
            continue
        # A mutated JSON request may be quarantined whole (one record); a well-formed one never.
        assert read == records or (body.content_type == JSON and whole_request_quarantined
                                   and not body.pristine), (
            f"{where}: {records} records in the body; stored {stored}, quarantined {reasons}")


_FAST = settings(max_examples=int(os.environ.get("TELLTALE_FUZZ_EXAMPLES", "60")),
                 deadline=timedelta(seconds=3),
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])


@_FAST
@given(body=bodies(mutated=False))
def test_valid_requests_are_accounted_for(fuzz_store: Store, body: Body) -> None:
    check_group(fuzz_store, [body])


@_FAST
@given(signal_=st.sampled_from(SIGNALS), data=st.data())
def test_mutated_protobuf(fuzz_store: Store, signal_: Signal, data: st.DataObject) -> None:
    req = data.draw(VALID[signal_])
    body = mutate_proto(req.SerializeToString(), data.draw(st.lists(_mutations, min_size=1, max_size=3)))
    check_group(fuzz_store, [Body(signal_, PROTOBUF, body)])


@_FAST
@given(signal_=st.sampled_from(SIGNALS), data=st.data())
def test_mutated_json(fuzz_store: Store, signal_: Signal, data: st.DataObject) -> None:
    req = data.draw(VALID[signal_])
    body = mutate_json(otlp_json(req), data.draw(st.lists(_json_edits, min_size=1, max_size=3)))
    check_group(fuzz_store, [Body(signal_, JSON, body)])


@_FAST
@given(group=st.lists(bodies(), min_size=2, max_size=4))
def test_mutated_groups(fuzz_store: Store, group: list[Body]) -> None:
    """A group commit mixes signals, encodings and broken parts: each part is judged alone."""
    check_group(fuzz_store, group)


@_FAST
@given(signal_=st.sampled_from(SIGNALS),
       data=st.binary(max_size=256) | st.text(max_size=64).map(str.encode),
       content_type=st.sampled_from([PROTOBUF, JSON]))
def test_random_bytes(fuzz_store: Store, signal_: Signal, data: bytes, content_type: str) -> None:
    check_group(fuzz_store, [Body(signal_, content_type, data)])


# -- the real receiver ------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    db: Path
    log: Path
    broken: str = ""  # set when a request hung: later examples fail at once instead of waiting


TELLTALE = [sys.executable, "-c", "from telltale.cli import main; main()"]


def start_server(db: Path, log: Path, extra: list[str] | None = None) -> Server:
    """`telltale serve` on free ports (`--port 0`); returns once it answers /healthz."""
    address = db.with_name(db.name + ".serve.json")
    address.unlink(missing_ok=True)
    with log.open("ab") as err:
        proc = subprocess.Popen([*TELLTALE, "--db", str(db), "serve", "--no-ui", "--port", "0",
                                 "--grpc-port", "0", *(extra or [])],
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"telltale serve exited with {proc.returncode}: {log.read_text()}")
        if address.exists():
            try:
                url = json.loads(address.read_text())["http"]
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return Server(proc, url, db, log)
            except (ValueError, KeyError, httpx.HTTPError):
                pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError("telltale serve did not come up in 30 s")


def stop_server(srv: Server, timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL if it has not exited in `timeout` s; returns the exit code."""
    if srv.process.poll() is None:
        srv.process.send_signal(signal.SIGTERM)
        try:
            srv.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            srv.process.kill()
            srv.process.wait()
    return srv.process.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve")
    srv = start_server(tmp / "s.duckdb", tmp / "serve.log", ["--no-grpc"])
    try:
        yield srv
    finally:
        stop_server(srv, timeout=10)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


_encodings = st.sampled_from(["identity", "gzip", "gzip", "corrupt-gzip", "truncated-gzip"])


def _encode(data: bytes, encoding: str) -> tuple[bytes, dict[str, str]]:
    if encoding == "identity":
        return data, {}
    packed = gzip.compress(data)
    if encoding == "corrupt-gzip":
        packed = packed[:10] + bytes(b ^ 0x5A for b in packed[10:20]) + packed[20:]
    elif encoding == "truncated-gzip":
        packed = packed[:max(1, len(packed) // 2)]
    return packed, {"Content-Encoding": "gzip"}


def _check_response(resp: httpx.Response, body: Body, encoding: str) -> None:
    assert resp.status_code in (200, 400), (
        f"{resp.status_code} for {body.signal} {body.content_type} {encoding}: {resp.text[:300]}")
    ctype = resp.headers.get("content-type", "").split(";")[0]
    assert ctype == body.content_type, f"the reply is {ctype}, the request {body.content_type}"
    if resp.status_code == 400:
        status = status_pb2.Status()
        if body.content_type == JSON:
            json_format.Parse(resp.content, status)
        else:
            status.ParseFromString(resp.content)
        assert status.message.strip(), "a 400 must say why"
        return
    assert encoding in ("identity", "gzip"), "corrupt gzip must be refused"
    reply = RESPONSES[body.signal]()
    if body.content_type == JSON:
        json_format.Parse(resp.content, reply)
    else:
        reply.ParseFromString(resp.content)


_HTTP = settings(max_examples=int(os.environ.get("TELLTALE_FUZZ_HTTP_EXAMPLES", "120")),
                 deadline=timedelta(seconds=5),
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])


@_HTTP
@given(body=bodies(), encoding=_encodings,
       charset=st.sampled_from(["", "; charset=utf-8", "; CHARSET=latin-1"]))
def test_http_receiver_answers_200_or_400(server: Server, client: httpx.Client, body: Body,
                                          encoding: str, charset: str) -> None:
    if server.broken:
        pytest.fail(f"the receiver stopped answering earlier: {server.broken}")
    data, headers = _encode(body.data, encoding)
    headers["Content-Type"] = body.content_type + charset
    try:
        resp = client.post(f"/v1/{body.signal.value}", content=data, headers=headers)
    except httpx.TimeoutException:
        server.broken = (f"no answer in 10 s to {body.signal} {body.content_type} {encoding} "
                         f"{body.data[:200]!r}")
        raise
    _check_response(resp, body, encoding)


def test_http_receiver_survives_and_drains(server: Server, client: httpx.Client) -> None:
    """After the fuzz loop: the server still answers and commits, stops cleanly on SIGTERM, and
    the store it leaves accounts for every batch (read = stored + quarantined = rows held)."""
    assert not server.broken, server.broken
    probe = ExportTraceServiceRequest()
    span = probe.resource_spans.add().scope_spans.add().spans.add(
        trace_id=bytes(range(1, 17)), span_id=b"\xf1" * 8, name="probe",
        start_time_unix_nano=T0, end_time_unix_nano=T0 + 1000)
    resp = client.post("/v1/traces", content=probe.SerializeToString(),
                       headers={"Content-Type": PROTOBUF})
    assert resp.status_code == 200
    assert client.get("/readyz").status_code == 200
    assert stop_server(server) == 0
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "panicked" not in log, log[-3000:]
    with Store(server.db, read_only=True) as store:
        read, stored, quarantined = (int(v or 0) for v in store.query(
            "SELECT sum(RecordsRead), sum(Stored), sum(Quarantined) FROM telltale_ingest_batches")[0])
        held = int(store.query(HELD_SQL)[0][0])
        kept = int(store.query("SELECT count(*) FROM telltale_quarantine")[0][0])
        probes = store.query("SELECT count(*) FROM otel_traces WHERE SpanId = ?", [span.span_id.hex()])
    assert read == stored + quarantined
    assert (held, kept) == (stored, quarantined)
    assert probes[0][0] == 1
