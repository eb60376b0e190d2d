"""OTLP protobuf log and metric messages → staging tables (traces: see `otlp_arrow`)."""

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


_MAX_NS = (1 << 63) - 1


def _ns(value: int) -> int | None:
    """A fixed64 time; beyond int64 it is unreadable (None: quarantined as a bad timestamp)."""
    return value if value <= _MAX_NS else None


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
                    "Timestamp": _ns(rec.time_unix_nano),
                    "ObservedTimestamp": _ns(rec.observed_time_unix_nano),
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
        "StartTimeUnix": _ns(point.start_time_unix_nano),
        "TimeUnix": _ns(point.time_unix_nano),
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
        raise TypeError("trace requests are decoded by otlp_arrow.trace_requests")
    if isinstance(req, ExportLogsServiceRequest):
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
