"""Stored spans as the Jaeger query API's JSON (the UI model of `model/json` in Jaeger).

The conversion follows the OpenTelemetry → Jaeger translator that Jaeger itself runs on OTLP
data (opentelemetry-collector-contrib `pkg/translator/jaeger`, then Jaeger's `FromDomain`):
- ids are lowercase hex; times and durations are whole microseconds (truncated, as Go's
  `UnixNano() / 1000`);
- the parent becomes the first reference (`CHILD_OF`), each link a `FOLLOWS_FROM` reference
  (`CHILD_OF` when the link says `opentracing.ref_type=child_of`; a link to the parent itself
  retypes the parent reference instead of adding one);
- tags in the translator's order: `otel.scope.name`, `otel.scope.version`, the span
  attributes, `span.kind`, `otel.status_code`, `error`, `otel.status_description`,
  `w3c.tracestate`;
- events become logs whose first field is `event` (the event name) unless an attribute named
  `event` is present;
- resources become processes `p1`, `p2`... in order of first use: the service name plus every
  other resource attribute as a tag.

telltale stores attribute values as the Collector's ClickHouse exporter does, as strings, so
their original types are gone: every attribute tag is a `string` tag. Guessing (is "200" an
int? is "0012" a zip code?) would invent types the data never had; only the tags this module
makes itself carry their true types (`error` is a bool).
"""

from __future__ import annotations

from typing import Any

from telltale.analyses.trace_detail import SpanDetail, SpanLink, TraceDetail

# The translator's process name for a resource without service.name (ResourceNoServiceName).
NO_SERVICE_NAME = "OTLPResourceNoServiceName"
JAEGER_KINDS = ("server", "client", "producer", "consumer", "internal")
CHILD_OF = "CHILD_OF"
FOLLOWS_FROM = "FOLLOWS_FROM"
REF_TYPE_ATTR = "opentracing.ref_type"

Json = dict[str, Any]


def jaeger_kind(stored: str) -> str:
    """'Server' / 'SPAN_KIND_SERVER' → 'server'; '' for Unspecified (no span.kind tag)."""
    kind = stored.removeprefix("SPAN_KIND_").lower()
    return kind if kind in JAEGER_KINDS else ""


def status_name(stored: str) -> str:
    """'Error' / 'STATUS_CODE_ERROR' → 'ERROR' (also 'OK', 'UNSET')."""
    return stored.removeprefix("STATUS_CODE_").upper() or "UNSET"


def tag(key: str, value: str | bool | int | float, type_: str = "string") -> Json:
    return {"key": key, "type": type_, "value": value}


def span_tags(span: SpanDetail) -> list[Json]:
    tags = []
    if span.scope_name:
        tags.append(tag("otel.scope.name", span.scope_name))
    if span.scope_version:
        tags.append(tag("otel.scope.version", span.scope_version))
    tags += [tag(k, v) for k, v in span.attributes.items()]
    if kind := jaeger_kind(span.kind):
        tags.append(tag("span.kind", kind))
    status = status_name(span.status_code)
    if status in ("ERROR", "OK"):
        tags.append(tag("otel.status_code", status))
    if status == "ERROR":
        tags.append(tag("error", True, "bool"))
    if span.status_message:
        tags.append(tag("otel.status_description", span.status_message))
    if span.trace_state:
        tags.append(tag("w3c.tracestate", span.trace_state))
    return tags


def _link_ref_type(link: SpanLink) -> str:
    return CHILD_OF if link.attributes.get(REF_TYPE_ATTR) == "child_of" else FOLLOWS_FROM


def references(span: SpanDetail) -> list[Json]:
    refs: list[Json] = []
    if span.parent_span_id:
        refs.append({"refType": CHILD_OF, "traceID": span.trace_id, "spanID": span.parent_span_id})
    for link in span.links:
        ref_type = _link_ref_type(link)
        if refs and link.trace_id == span.trace_id and link.span_id == span.parent_span_id:
            refs[0]["refType"] = ref_type  # the link restates the parent: keep one reference
            continue
        refs.append({"refType": ref_type, "traceID": link.trace_id, "spanID": link.span_id})
    return refs


def logs(span: SpanDetail) -> list[Json]:
    out = []
    for event in span.events:
        fields = []
        if event.name and "event" not in event.attributes:
            fields.append(tag("event", event.name))
        fields += [tag(k, v) for k, v in event.attributes.items()]
        out.append({"timestamp": event.timestamp_ns // 1000, "fields": fields})
    return out


def _process(span: SpanDetail) -> Json:
    return {"serviceName": span.service or NO_SERVICE_NAME,
            "tags": [tag(k, v) for k, v in span.resource.items() if k != "service.name"]}


def jaeger_span(span: SpanDetail, process_id: str) -> Json:
    return {
        "traceID": span.trace_id,
        "spanID": span.span_id,
        "operationName": span.name,
        "references": references(span),
        "startTime": span.start_ns // 1000,
        "duration": span.duration_ns // 1000,
        "tags": span_tags(span),
        "logs": logs(span),
        "processID": process_id,
        "warnings": None,
    }


def jaeger_trace(trace: TraceDetail) -> Json:
    """One trace as Jaeger's UI JSON: spans in stored order (start time, then span id),
    duplicates included, one process per distinct (service, resource)."""
    process_ids: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    processes: dict[str, Json] = {}
    spans = []
    for span in trace.spans:
        key = (span.service, tuple(span.resource.items()))
        pid = process_ids.get(key)
        if pid is None:
            pid = process_ids[key] = f"p{len(process_ids) + 1}"
            processes[pid] = _process(span)
        spans.append(jaeger_span(span, pid))
    return {"traceID": trace.trace_id, "spans": spans, "processes": processes, "warnings": None}


def response(data: Any, *, total: int = 0, errors: list[Json] | None = None) -> Json:
    """Jaeger's structuredResponse envelope (limit and offset are always 0 in Jaeger)."""
    return {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}


def error_response(code: int, msg: str) -> Json:
    return response(None, errors=[{"code": code, "msg": msg}])
