"""Decode Jaeger UI JSON downloads into staged spans.

Accepts `{"data": [trace, ...]}` (UI download and query API), a bare trace object, or a list of
traces. Tag conventions follow the Collector's Jaeger→OTLP translator, so a trace that went
OTLP→Jaeger comes back as the same OTLP span: `span.kind`, `otel.status_code`, `error`,
`otel.scope.*` and `w3c.tracestate` become span fields and leave the attributes.

"""

from __future__ import annotations

from typing import Any

import orjson

from telltale.model import QuarantineReason, Signal, SpanKind, StatusCode
from telltale.normalize.fields import (
    NOT_LOADED,
    SPAN_ID_HEX,
    TRACE_ID_HEX,
    Attrs,
    attr_text,
    end_ns,
    is_true,
    load_document,
    micros_to_ns,
    pad_id,
    record_size,
    span_table,
)
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject


def _tags(items: object) -> dict[str, object]:
    """Jaeger `[{key, type, value}]` → {key: value}; entries without a key carry nothing."""
    out: dict[str, object] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                out[item["key"]] = item.get("value")
    return out


def _traces(doc: Any) -> list[Any] | None:
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        return list(doc["data"])
    if isinstance(doc, dict) and "spans" in doc:
        return [doc]
    if isinstance(doc, list):
        return doc
    return None


def _process(trace: dict[str, Any], span: dict[str, Any]) -> tuple[str | None, Attrs]:
    """Service name and resource attributes of a span's process (shared table or inline)."""
    processes = trace.get("processes")
    pid = span.get("processID")
    proc = processes.get(pid) if isinstance(processes, dict) and isinstance(pid, str) else None
    if not isinstance(proc, dict):
        proc = span.get("process")
    if not isinstance(proc, dict):
        proc = {}
    service = proc.get("serviceName")
    service = attr_text(service) if service is not None else None
    attrs = [(k, attr_text(v)) for k, v in _tags(proc.get("tags")).items() if k != "service.name"]
    return service, ([("service.name", service)] if service is not None else []) + attrs


def _parent_and_links(span: dict[str, Any], trace_id: str | None) -> tuple[str, list[object]]:
    """Jaeger's own rule: parent = first same-trace CHILD_OF, else first same-trace FOLLOWS_FROM."""
    raw_refs = span.get("references")
    refs = [r for r in raw_refs if isinstance(r, dict)] if isinstance(raw_refs, list) else []

    def same_trace(ref: dict[str, Any]) -> bool:
        ref_trace = pad_id(ref.get("traceID"), TRACE_ID_HEX)
        return ref_trace is None or trace_id is None or ref_trace.lower() == trace_id.lower()

    chosen: int | None = None
    for ref_type in ("CHILD_OF", "FOLLOWS_FROM"):
        chosen = next((i for i, r in enumerate(refs)
                       if str(r.get("refType", "")).upper() == ref_type and same_trace(r)), None)
        if chosen is not None:
            break
    parent = pad_id(refs[chosen].get("spanID"), SPAN_ID_HEX) if chosen is not None else None
    if chosen is None and span.get("parentSpanID") not in (None, ""):  # pre-references format
        parent = pad_id(span["parentSpanID"], SPAN_ID_HEX)
    links: list[object] = [
        {
            "TraceId": pad_id(r.get("traceID"), TRACE_ID_HEX) or trace_id,
            "SpanId": pad_id(r.get("spanID"), SPAN_ID_HEX),
            "TraceState": None,
            "Attributes": [("opentracing.ref_type", str(r.get("refType", "")).lower())],
        }
        for i, r in enumerate(refs) if i != chosen
    ]
    return parent or "", links


def _events(logs: object) -> list[object]:
    events: list[object] = []
    for log in logs if isinstance(logs, list) else []:
        if not isinstance(log, dict):
            continue
        fields = _tags(log.get("fields"))
        name = fields.pop("event", "")
        events.append({
            "Timestamp": micros_to_ns(log.get("timestamp")),
            "Name": attr_text(name),
            "Attributes": [(k, attr_text(v)) for k, v in fields.items()],
        })
    return events


def _span_row(trace: dict[str, Any], span: dict[str, Any], pos: str) -> dict[str, object]:
    tags = _tags(span.get("tags"))
    kind = SpanKind.from_otlp(attr_text(tags.pop("span.kind", "")) or None)
    # As the Collector: a true `error` tag is the final word; otel.status_code otherwise.
    code = tags.pop("otel.status_code", None)
    message = tags.pop("otel.status_description", None)
    if is_true(tags.get("error")):
        del tags["error"]
        status = StatusCode.ERROR
    else:
        status = StatusCode.from_otlp(attr_text(code)) if code is not None else StatusCode.UNSET
    scope = tags.pop("otel.scope.name", tags.pop("otel.library.name", None))
    scope_version = tags.pop("otel.scope.version", tags.pop("otel.library.version", None))
    trace_state = tags.pop("w3c.tracestate", None)
    attrs = [(k, attr_text(v)) for k, v in tags.items()]
    if span.get("warnings"):
        attrs.append(("jaeger.warnings", attr_text(span["warnings"])))
    trace_id = pad_id(span.get("traceID", trace.get("traceID")), TRACE_ID_HEX)
    parent, links = _parent_and_links(span, trace_id)
    service, resource = _process(trace, span)
    start = micros_to_ns(span.get("startTime"))
    duration = micros_to_ns(span.get("duration"))
    return {
        "Pos": pos,
        "RecordBytes": record_size(span),
        "StartNs": start,
        "EndNs": end_ns(start, duration),
        "TraceId": trace_id,
        "SpanId": pad_id(span.get("spanID"), SPAN_ID_HEX),
        "ParentSpanId": parent,
        "TraceState": attr_text(trace_state) if trace_state is not None else None,
        "SpanName": attr_text(name) if (name := span.get("operationName")) is not None else None,
        "SpanKind": kind.value,
        "ServiceName": service,
        "ResourceAttributes": resource,
        "ScopeName": attr_text(scope) if scope is not None else None,
        "ScopeVersion": attr_text(scope_version) if scope_version is not None else None,
        "SpanAttributes": attrs,
        "StatusCode": status.value,
        "StatusMessage": attr_text(message) if message is not None else None,
        "Events": _events(span.get("logs")),
        "Links": links,
    }


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    """Jaeger UI JSON → staged spans; traces or spans of the wrong shape become rejects."""
    out = Decoded()
    doc = load_document(data, out.rejects)
    if doc is NOT_LOADED:
        return out
    traces = _traces(doc)
    if traces is None:
        out.rejects.append(Reject(Signal.TRACES, "document", QuarantineReason.BAD_SHAPE,
                                  data.decode(), 'expected {"data": [traces]}, a trace or a list'))
        return out
    rows: list[dict[str, object]] = []
    for t_no, trace in enumerate(traces, start=1):
        if not isinstance(trace, dict) or not isinstance(trace.get("spans"), list):
            out.rejects.append(Reject(Signal.TRACES, f"trace {t_no}", QuarantineReason.BAD_SHAPE,
                                      orjson.dumps(trace).decode(), "trace without a spans list"))
            continue
        for s_no, span in enumerate(trace["spans"], start=1):
            pos = f"trace {t_no} span {s_no}"
            if isinstance(span, dict):
                rows.append(_span_row(trace, span, pos))
            else:
                out.rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.BAD_SHAPE,
                                          orjson.dumps(span).decode(), "span is not an object"))
    if rows:
        out.spans.append(span_table(rows))
    return out
