"""OTLP protobuf messages → staging tables.

The per-span loop touches each field once and keeps resource-level values out of it (they are
expanded with Arrow `take`), because per-span Python is the cost that bounds protobuf ingest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from telltale.model import MetricType, QuarantineReason, Signal, SpanKind, StatusCode
from telltale.normalize import staging
from telltale.normalize.anyvalue import as_string, attr_items
from telltale.normalize.staging import Decoded, Reject

_KINDS = [k.value for k in SpanKind]
_STATUS = [s.value for s in StatusCode]
Request = ExportTraceServiceRequest | ExportLogsServiceRequest | ExportMetricsServiceRequest
REQUEST_TYPES: dict[Signal, type[Request]] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
}


def _expand(per_resource: list[Any], index: list[int], typ: pa.DataType) -> pa.Array:
    return pa.array(per_resource, type=typ).take(pa.array(index, type=pa.int32()))


def _map_array(kv_lists: list[Any]) -> pa.Array:
    """Repeated KeyValue fields → one Arrow map array, a column at a time (no per-span dicts).

    Each `.value` access builds a wrapper object, so it happens once per attribute."""
    offsets = [0]
    keys: list[str] = []
    values: list[str] = []
    for kvs in kv_lists:
        for kv in kvs:
            v = kv.value
            keys.append(kv.key)
            values.append(v.string_value if v.WhichOneof("value") == "string_value"
                          else as_string(v))
        offsets.append(len(keys))
    offsets, keys, values = _last_key_wins(offsets, keys, values)
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(keys, pa.string()),
                                   pa.array(values, pa.string()))


def _last_key_wins(offsets: list[int], keys: list[str],
                   values: list[str]) -> tuple[list[int], list[str], list[str]]:
    """A key repeated within one record keeps its last value (a map cannot hold both)."""
    rows_with_dups = [r for r in range(len(offsets) - 1) if offsets[r + 1] - offsets[r] > 1
                      and len(set(keys[offsets[r]:offsets[r + 1]])) < offsets[r + 1] - offsets[r]]
    if not rows_with_dups:
        return offsets, keys, values
    new_offsets: list[int] = [0]
    new_keys: list[str] = []
    new_values: list[str] = []
    for r in range(len(offsets) - 1):
        row = dict(zip(keys[offsets[r]:offsets[r + 1]], values[offsets[r]:offsets[r + 1]],
                       strict=True))
        new_keys.extend(row)
        new_values.extend(row.values())
        new_offsets.append(len(new_keys))
    return new_offsets, new_keys, new_values


def spans_table(req: ExportTraceServiceRequest, pos: str) -> pa.Table:
    spans: list[Any] = []
    res_index: list[int] = []
    scope_name: list[str] = []
    scope_version: list[str] = []
    res_attrs: list[list[tuple[str, str]]] = []
    res_service: list[str | None] = []
    for ri, rs in enumerate(req.resource_spans):
        ra = attr_items(rs.resource.attributes)
        res_attrs.append(ra)
        res_service.append(dict(ra).get("service.name"))
        for ss in rs.scope_spans:
            batch = list(ss.spans)
            spans.extend(batch)
            res_index.extend([ri] * len(batch))
            scope_name.extend([ss.scope.name] * len(batch))
            scope_version.extend([ss.scope.version] * len(batch))
    n = len(spans)
    status = [sp.status for sp in spans]
    string = pa.string()
    arrays: dict[str, pa.Array] = {
        "Pos": pa.array([f"{pos} span {i}" for i in range(1, n + 1)], string),
        "RecordBytes": pa.array([sp.ByteSize() for sp in spans], pa.int64()),
        "Defect": pa.nulls(n, string),
        "Raw": pa.nulls(n, string),
        "StartNs": pa.array([sp.start_time_unix_nano for sp in spans], pa.int64()),
        "EndNs": pa.array([sp.end_time_unix_nano for sp in spans], pa.int64()),
        "TraceId": pa.array([sp.trace_id.hex() for sp in spans], string),
        "SpanId": pa.array([sp.span_id.hex() for sp in spans], string),
        "ParentSpanId": pa.array([sp.parent_span_id.hex() for sp in spans], string),
        "TraceState": pa.array([sp.trace_state for sp in spans], string),
        "SpanName": pa.array([sp.name for sp in spans], string),
        "SpanKind": pa.array([_KINDS[k] if k < len(_KINDS) else _KINDS[0]
                              for k in (sp.kind for sp in spans)], string),
        "ServiceName": _expand(res_service, res_index, string),
        "ResourceAttributes": _expand(res_attrs, res_index, staging.ATTRS),
        "ScopeName": pa.array(scope_name, string),
        "ScopeVersion": pa.array(scope_version, string),
        "SpanAttributes": _map_array([sp.attributes for sp in spans]),
        "StatusCode": pa.array([_STATUS[c] if c < 3 else _STATUS[0]
                                for c in (st.code for st in status)], string),
        "StatusMessage": pa.array([st.message for st in status], string),
        "Events": pa.array([
            [{"Timestamp": e.time_unix_nano, "Name": e.name,
              "Attributes": attr_items(e.attributes)} for e in sp.events] if sp.events else []
            for sp in spans], staging.SPANS.field("Events").type),
        "Links": pa.array([
            [{"TraceId": k.trace_id.hex(), "SpanId": k.span_id.hex(), "TraceState": k.trace_state,
              "Attributes": attr_items(k.attributes)} for k in sp.links] if sp.links else []
            for sp in spans], staging.SPANS.field("Links").type),
    }
    return pa.Table.from_arrays([arrays[f.name] for f in staging.SPANS], schema=staging.SPANS)


def logs_table(req: ExportLogsServiceRequest, pos: str) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for rl in req.resource_logs:
        ra = attr_items(rl.resource.attributes)
        service = dict(ra).get("service.name")
        for sl in rl.scope_logs:
            scope_attrs = attr_items(sl.scope.attributes)
            for rec in sl.log_records:
                rows.append({
                    "Pos": f"{pos} log {len(rows) + 1}",
                    "RecordBytes": rec.ByteSize(),
                    "Timestamp": rec.time_unix_nano,
                    "ObservedTimestamp": rec.observed_time_unix_nano,
                    "TraceId": rec.trace_id.hex(),
                    "SpanId": rec.span_id.hex(),
                    "TraceFlags": rec.flags,
                    "SeverityText": rec.severity_text,
                    "SeverityNumber": int(rec.severity_number),
                    "ServiceName": service,
                    "Body": as_string(rec.body),
                    "ResourceSchemaUrl": rl.schema_url,
                    "ResourceAttributes": ra,
                    "ScopeSchemaUrl": sl.schema_url,
                    "ScopeName": sl.scope.name,
                    "ScopeVersion": sl.scope.version,
                    "ScopeAttributes": scope_attrs,
                    "LogAttributes": attr_items(rec.attributes),
                    "EventName": rec.event_name,
                })
    return pa.Table.from_pylist(rows, schema=staging.LOGS)


def _point_common(point: Any) -> dict[str, Any]:
    return {
        "Attributes": attr_items(point.attributes),
        "StartTimeUnix": point.start_time_unix_nano,
        "TimeUnix": point.time_unix_nano,
        "Flags": point.flags,
    }


def _number(point: Any) -> float | None:
    which = point.WhichOneof("value")
    return float(getattr(point, which)) if which else None


def _points(metric: Metric) -> Iterator[tuple[MetricType, dict[str, Any]]]:
    data = metric.WhichOneof("data")
    if data == "gauge":
        for p in metric.gauge.data_points:
            yield MetricType.GAUGE, {**_point_common(p), "Value": _number(p)}
    elif data == "sum":
        s = metric.sum
        for p in s.data_points:
            yield MetricType.SUM, {**_point_common(p), "Value": _number(p),
                                   "AggregationTemporality": int(s.aggregation_temporality),
                                   "IsMonotonic": s.is_monotonic}
    elif data == "histogram":
        h = metric.histogram
        for hp in h.data_points:
            yield MetricType.HISTOGRAM, {
                **_point_common(hp), "Count": hp.count,
                "Sum": hp.sum if hp.HasField("sum") else None,
                "BucketCounts": list(hp.bucket_counts), "ExplicitBounds": list(hp.explicit_bounds),
                "Min": hp.min if hp.HasField("min") else None,
                "Max": hp.max if hp.HasField("max") else None,
                "AggregationTemporality": int(h.aggregation_temporality)}
    elif data == "exponential_histogram":
        e = metric.exponential_histogram
        for ep in e.data_points:
            yield MetricType.EXPONENTIAL_HISTOGRAM, {
                **_point_common(ep), "Count": ep.count,
                "Sum": ep.sum if ep.HasField("sum") else None, "Scale": ep.scale,
                "ZeroCount": ep.zero_count, "PositiveOffset": ep.positive.offset,
                "PositiveBucketCounts": list(ep.positive.bucket_counts),
                "NegativeOffset": ep.negative.offset,
                "NegativeBucketCounts": list(ep.negative.bucket_counts),
                "Min": ep.min if ep.HasField("min") else None,
                "Max": ep.max if ep.HasField("max") else None,
                "AggregationTemporality": int(e.aggregation_temporality)}
    elif data == "summary":
        for qp in metric.summary.data_points:
            yield MetricType.SUMMARY, {
                **_point_common(qp), "Count": qp.count, "Sum": qp.sum,
                "ValueAtQuantiles": [{"Quantile": q.quantile, "Value": q.value}
                                     for q in qp.quantile_values]}


def metrics_tables(req: ExportMetricsServiceRequest, pos: str,
                   rejects: list[Reject]) -> dict[MetricType, pa.Table]:
    rows: dict[MetricType, list[dict[str, Any]]] = {}
    n = 0
    for rm in req.resource_metrics:
        ra = attr_items(rm.resource.attributes)
        base = {"ResourceAttributes": ra, "ResourceSchemaUrl": rm.schema_url,
                "ServiceName": dict(ra).get("service.name")}
        for sm in rm.scope_metrics:
            scope = {**base, "ScopeName": sm.scope.name, "ScopeVersion": sm.scope.version,
                     "ScopeAttributes": attr_items(sm.scope.attributes),
                     "ScopeSchemaUrl": sm.schema_url}
            for metric in sm.metrics:
                n += 1
                if metric.WhichOneof("data") is None:
                    rejects.append(Reject(Signal.METRICS, f"{pos} metric {n}",
                                          QuarantineReason.BAD_SHAPE, str(metric)[:4096],
                                          "metric has no data points type"))
                    continue
                ident = {**scope, "MetricName": metric.name,
                         "MetricDescription": metric.description, "MetricUnit": metric.unit,
                         "RecordBytes": metric.ByteSize()}
                for i, (kind, point) in enumerate(_points(metric), start=1):
                    rows.setdefault(kind, []).append(
                        {**ident, **point, "Pos": f"{pos} metric {n} point {i}"})
    return {k: pa.Table.from_pylist(v, schema=staging.METRICS[k]) for k, v in rows.items()}


def decode_request(req: Request, pos: str) -> Decoded:
    out = Decoded()
    if isinstance(req, ExportTraceServiceRequest):
        out.spans.append(spans_table(req, pos))
    elif isinstance(req, ExportLogsServiceRequest):
        out.logs.append(logs_table(req, pos))
    else:
        for kind, tbl in metrics_tables(req, pos, out.rejects).items():
            out.metrics.setdefault(kind, []).append(tbl)
    return out


def parse(signal: Signal, payload: bytes) -> Request:
    """Parse one serialized Export*ServiceRequest; raises DecodeError on malformed bytes."""
    msg = REQUEST_TYPES[signal]()
    msg.ParseFromString(payload)
    return msg


__all__ = ["DecodeError", "decode_request", "parse"]
