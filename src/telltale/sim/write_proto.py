"""OTLP protobuf: Export*ServiceRequest messages built with the opentelemetry-proto classes.

Files hold length-delimited messages (a varint byte count before each), the framing of
`writeDelimitedTo` and of `google.protobuf.internal.encoder._VarintBytes`. Requests are cut at
the same line boundaries as the JSON writer. Attribute and resource messages repeat a lot, so
they are built once per distinct value and reused. Metrics requests are built here for both
formats: their JSON is the protobuf JSON mapping of the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from telltale.model import MetricType, SpanKind, StatusCode
from telltale.sim import columns as col
from telltale.sim.topology import BOOL_KEYS, DOUBLE_KEYS, INT_KEYS
from telltale.sim.write_json import SPANS_PER_LINE, batches, line_offsets, resource_runs

_KIND = {k.value: i for i, k in enumerate(SpanKind)}
_STATUS = {s.value: i for i, s in enumerate(StatusCode)}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def write_delimited(path: Path, messages: Iterable[Any]) -> Path:
    with path.open("wb") as out:
        for message in messages:
            data = message.SerializeToString(deterministic=True)
            out.write(varint(len(data)))
            out.write(data)
    return path


class _Attrs:
    """KeyValue lists from map rows, typed per key, each distinct pair built once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], KeyValue] = {}

    def __call__(self, pairs: list[tuple[str, str]] | None) -> list[KeyValue]:
        return [self._kv(k, v) for k, v in pairs or ()]

    def rows(self, maps: pa.Array) -> list[list[KeyValue]]:
        """Per-row KeyValue lists of a whole map column, converting each distinct pair once."""
        offsets, keys, items = col.map_parts(maps)
        pairs = col.concat([keys, "\x00", items], len(keys)).dictionary_encode()
        built = [self._kv(*p.split("\x00", 1)) for p in pairs.dictionary.to_pylist()]
        flat = [built[i] for i in np.asarray(pairs.indices).tolist()]
        bounds = offsets.tolist()
        return [flat[a:b] for a, b in pairwise(bounds)]

    def _kv(self, key: str, value: str) -> KeyValue:
        kv = self._cache.get((key, value))
        if kv is None:
            kv = self._cache[(key, value)] = KeyValue(key=key, value=_typed(key, value))
        return kv


def _typed(key: str, value: str) -> AnyValue:
    """Typed per key, as the JSON writer does; a value of the wrong shape stays a string."""
    try:
        if key in INT_KEYS:
            return AnyValue(int_value=int(value))
        if key in DOUBLE_KEYS:
            return AnyValue(double_value=float(value))
    except ValueError:
        pass
    if key in BOOL_KEYS and value in ("true", "false"):
        return AnyValue(bool_value=value == "true")
    return AnyValue(string_value=value)


def _lines(t: pa.Table, per_line: int) -> npt.NDArray[np.int64]:
    return line_offsets(resource_runs(t), per_line)


def _ids(values: pa.Array) -> list[bytes]:
    return [bytes.fromhex(v or "") for v in values.to_pylist()]


def _scope(row: dict[str, Any]) -> InstrumentationScope:
    return InstrumentationScope(name=row["ScopeName"] or "", version=row["ScopeVersion"] or "")


def trace_requests(t: pa.Table, per_line: int = SPANS_PER_LINE
                   ) -> Iterator[ExportTraceServiceRequest]:
    """Requests built column-wise: python lists per column, spans added in place."""
    attrs = _Attrs()
    offsets = _lines(t, per_line)
    for first, end in batches(offsets):
        lo, hi = int(offsets[first]), int(offsets[end])
        b = t.slice(lo, hi - lo)
        c = {n: b.column(n).combine_chunks() for n in b.column_names}
        trace, span, parent = _ids(c["TraceId"]), _ids(c["SpanId"]), _ids(c["ParentSpanId"])
        name, state = c["SpanName"].to_pylist(), c["TraceState"].to_pylist()
        kind = [_KIND.get(k, 0) for k in c["SpanKind"].to_pylist()]
        status = [_STATUS.get(k, 0) for k in c["StatusCode"].to_pylist()]
        message = c["StatusMessage"].to_pylist()
        start, stop = c["StartNs"].to_pylist(), c["EndNs"].to_pylist()
        span_attrs = attrs.rows(c["SpanAttributes"])
        nested = np.flatnonzero(np.asarray(pc.add(pc.list_value_length(c["Events"]),
                                                  pc.list_value_length(c["Links"]))))
        events = dict(zip(nested.tolist(), c["Events"].take(pa.array(nested)).to_pylist(),
                          strict=True))
        links = dict(zip(nested.tolist(), c["Links"].take(pa.array(nested)).to_pylist(),
                         strict=True))
        heads = b.select(["ResourceAttributes", "ScopeName", "ScopeVersion"])
        for a, z in zip(offsets[first:end] - lo, offsets[first + 1:end + 1] - lo, strict=True):
            head = heads.slice(int(a), 1).to_pylist()[0]
            request = ExportTraceServiceRequest()
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.extend(attrs(head["ResourceAttributes"]))
            scope_spans = resource_spans.scope_spans.add(scope=_scope(head))
            for i in range(int(a), int(z)):
                out = scope_spans.spans.add(
                    trace_id=trace[i], span_id=span[i], parent_span_id=parent[i],
                    trace_state=state[i] or "", name=name[i], kind=kind[i],
                    start_time_unix_nano=start[i], end_time_unix_nano=stop[i],
                    attributes=span_attrs[i])
                if status[i]:
                    out.status.code = Status.StatusCode.ValueType(status[i])
                    out.status.message = message[i] or ""
                for e in events.get(i) or ():
                    out.events.add(time_unix_nano=e["Timestamp"], name=e["Name"],
                                   attributes=attrs(e["Attributes"]))
                for k in links.get(i) or ():
                    out.links.add(trace_id=bytes.fromhex(k["TraceId"]),
                                  span_id=bytes.fromhex(k["SpanId"]),
                                  trace_state=k["TraceState"] or "",
                                  attributes=attrs(k["Attributes"]))
            yield request


def log_requests(t: pa.Table, per_line: int = SPANS_PER_LINE) -> Iterator[ExportLogsServiceRequest]:
    attrs = _Attrs()
    offsets = _lines(t, per_line)
    c = {n: t.column(n).combine_chunks() for n in t.column_names}
    trace, span = _ids(c["TraceId"]), _ids(c["SpanId"])
    ts, seen = c["Timestamp"].to_pylist(), c["ObservedTimestamp"].to_pylist()
    number, text = c["SeverityNumber"].to_pylist(), c["SeverityText"].to_pylist()
    body, flags = c["Body"].to_pylist(), c["TraceFlags"].to_pylist()
    log_attrs = attrs.rows(c["LogAttributes"])
    heads = t.select(["ResourceAttributes", "ScopeName", "ScopeVersion"])
    for a, z in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        head = heads.slice(a, 1).to_pylist()[0]
        request = ExportLogsServiceRequest()
        resource_logs = request.resource_logs.add()
        resource_logs.resource.attributes.extend(attrs(head["ResourceAttributes"]))
        scope_logs = resource_logs.scope_logs.add(scope=_scope(head))
        for i in range(a, z):
            scope_logs.log_records.add(
                time_unix_nano=ts[i], observed_time_unix_nano=seen[i],
                severity_number=number[i], severity_text=text[i],
                body=AnyValue(string_value=body[i]), attributes=log_attrs[i],
                flags=flags[i] or 0, trace_id=trace[i], span_id=span[i])
        yield request


def metric_requests(tables: dict[MetricType, pa.Table]) -> list[ExportMetricsServiceRequest]:
    """One request per resource holding all its metrics (data points in time order)."""
    attrs = _Attrs()
    by_resource: dict[tuple[Any, ...], dict[tuple[str, str, str, str], list[Any]]] = {}
    heads: dict[tuple[Any, ...], dict[str, Any]] = {}
    for kind in (MetricType.GAUGE, MetricType.SUM, MetricType.HISTOGRAM):
        if kind not in tables:
            continue
        for r in tables[kind].to_pylist():
            key = (tuple(r["ResourceAttributes"]), r["ScopeName"], r["ScopeVersion"])
            heads.setdefault(key, r)
            metric = (kind.value, r["MetricName"], r["MetricDescription"] or "",
                      r["MetricUnit"] or "")
            by_resource.setdefault(key, {}).setdefault(metric, []).append(r)
    out = []
    for key, metrics in by_resource.items():
        built = [_metric(kind, name, desc, unit, points, attrs)
                 for (kind, name, desc, unit), points in metrics.items()]
        head = heads[key]
        out.append(ExportMetricsServiceRequest(resource_metrics=[m.ResourceMetrics(
            resource=Resource(attributes=attrs(head["ResourceAttributes"])),
            scope_metrics=[m.ScopeMetrics(scope=_scope(head), metrics=built)])]))
    return out


def _metric(kind: str, name: str, desc: str, unit: str, points: list[dict[str, Any]],
            attrs: _Attrs) -> m.Metric:
    def common(r: dict[str, Any]) -> dict[str, Any]:
        return {"attributes": attrs(r["Attributes"]), "time_unix_nano": r["TimeUnix"],
                "start_time_unix_nano": r["StartTimeUnix"] or 0}

    metric = m.Metric(name=name, description=desc, unit=unit)
    if kind == MetricType.GAUGE.value:
        metric.gauge.data_points.extend(
            m.NumberDataPoint(as_double=r["Value"], **common(r)) for r in points)
    elif kind == MetricType.SUM.value:
        metric.sum.aggregation_temporality = points[0]["AggregationTemporality"]
        metric.sum.is_monotonic = bool(points[0]["IsMonotonic"])
        metric.sum.data_points.extend(
            m.NumberDataPoint(as_double=r["Value"], **common(r)) for r in points)
    else:
        metric.histogram.aggregation_temporality = points[0]["AggregationTemporality"]
        metric.histogram.data_points.extend(m.HistogramDataPoint(
            count=r["Count"], sum=r["Sum"], bucket_counts=r["BucketCounts"],
            explicit_bounds=r["ExplicitBounds"], min=r["Min"], max=r["Max"], **common(r),
        ) for r in points)
    return metric
