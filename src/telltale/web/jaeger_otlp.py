"""Stored spans back as OTLP JSON, for Jaeger's OTLP-native query API (`/api/v3/`).

Spans are grouped by (resource, scope) in order of first appearance, as an exporter batches
them. OTLP JSON spells ids as hex, enums as numbers and 64-bit integers as strings. Attribute
values come back as `stringValue`: telltale stores them as strings (like the Collector's
ClickHouse exporter), so their original types are not known.
"""

from __future__ import annotations

from typing import Any

from telltale.analyses.trace_detail import SpanDetail

Json = dict[str, Any]

SPAN_KINDS = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4,
              "consumer": 5}
STATUS_CODES = {"unset": 0, "ok": 1, "error": 2}


def kind_number(stored: str) -> int:
    return SPAN_KINDS.get(stored.removeprefix("SPAN_KIND_").lower(), 0)


def status_number(stored: str) -> int:
    return STATUS_CODES.get(stored.removeprefix("STATUS_CODE_").lower(), 0)


def key_values(attributes: dict[str, str]) -> list[Json]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()]


def otlp_span(span: SpanDetail) -> Json:
    out: Json = {"traceId": span.trace_id, "spanId": span.span_id}
    if span.trace_state:
        out["traceState"] = span.trace_state
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    out |= {"name": span.name, "kind": kind_number(span.kind),
            "startTimeUnixNano": str(span.start_ns), "endTimeUnixNano": str(span.end_ns)}
    if span.attributes:
        out["attributes"] = key_values(span.attributes)
    if span.events:
        out["events"] = [{"timeUnixNano": str(e.timestamp_ns), "name": e.name,
                          **({"attributes": key_values(e.attributes)} if e.attributes else {})}
                         for e in span.events]
    if span.links:
        out["links"] = [{"traceId": lk.trace_id, "spanId": lk.span_id,
                         **({"traceState": lk.trace_state} if lk.trace_state else {}),
                         **({"attributes": key_values(lk.attributes)} if lk.attributes else {})}
                        for lk in span.links]
    status: Json = {}
    if span.status_message:
        status["message"] = span.status_message
    if code := status_number(span.status_code):
        status["code"] = code
    out["status"] = status
    return out


def _resource(span: SpanDetail) -> dict[str, str]:
    resource = dict(span.resource)
    if span.service and "service.name" not in resource:
        resource["service.name"] = span.service  # stored in its own column only
    return resource


def traces_data(spans: list[SpanDetail]) -> Json:
    """OTLP `TracesData` holding these spans, in their order within each (resource, scope)."""
    groups: dict[tuple[Any, ...], dict[tuple[str, str], list[Json]]] = {}
    resources: dict[tuple[Any, ...], dict[str, str]] = {}
    for span in spans:
        resource = _resource(span)
        rkey = tuple(resource.items())
        resources.setdefault(rkey, resource)
        scopes = groups.setdefault(rkey, {})
        scopes.setdefault((span.scope_name, span.scope_version), []).append(otlp_span(span))
    resource_spans = []
    for rkey, scopes in groups.items():
        scope_spans = []
        for (name, version), items in scopes.items():
            scope: Json = {}
            if name:
                scope["name"] = name
            if version:
                scope["version"] = version
            scope_spans.append({"scope": scope, "spans": items})
        resource_spans.append({"resource": {"attributes": key_values(resources[rkey])},
                               "scopeSpans": scope_spans})
    return {"resourceSpans": resource_spans}
