"""Decode Zipkin v2 JSON into staged spans.

Accepts a list of spans (what `POST /api/v2/spans` receives), a list of traces (what
`GET /api/v2/traces` returns: a list of span lists) or a single span object. Mapping follows the
Collector's Zipkin translator: `otel.status_code` is honoured, an `error` tag means Error with its
value as the message, the remote endpoint becomes peer attributes, annotations become events.
Zipkin endpoints carry no host name: `net.peer.name` appears only when a tag sets it.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    load_document,
    micros_to_ns,
    pad_id,
    record_size,
    span_table,
)
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

# Zipkin error tags that only flag the error and say nothing worth a status message.
_BARE_ERROR = {"", "true", "1"}


def _records(doc: Any) -> Iterator[tuple[str, object]]:
    """(position, span) pairs from any accepted document shape."""
    if isinstance(doc, dict):
        yield "span 1", doc
        return
    for i, item in enumerate(doc, start=1):
        if isinstance(item, list):
            for j, span in enumerate(item, start=1):
                yield f"trace {i} span {j}", span
        else:
            yield f"span {i}", item


def _endpoint(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _status(tags: dict[str, str]) -> tuple[StatusCode, str | None]:
    code = tags.pop("otel.status_code", None)
    message = tags.pop("otel.status_description", None)
    status = StatusCode.from_otlp(code) if code else StatusCode.UNSET
    error = tags.get("error")
    # Zipkin marks failure by the tag's presence; its value is the message. "false" is not one.
    if error is not None and error.lower() != "false":
        del tags["error"]
        status = StatusCode.ERROR
        if message is None and error.lower() not in _BARE_ERROR:
            message = error
    return status, message


def _peer_attributes(remote: dict[str, Any], tags: dict[str, str]) -> Attrs:
    """Remote endpoint → OTel peer attributes; a tag of the same name wins."""
    candidates = [
        ("peer.service", remote.get("serviceName")),
        ("net.peer.ip", remote.get("ipv4") or remote.get("ipv6")),
        ("net.peer.port", remote.get("port")),
    ]
    return [(k, attr_text(v)) for k, v in candidates if v not in (None, "") and k not in tags]


def _resource(local: dict[str, Any], service: str | None) -> Attrs:
    candidates = [
        ("service.name", service),
        ("net.host.ip", local.get("ipv4") or local.get("ipv6")),
        ("net.host.port", local.get("port")),
    ]
    return [(k, attr_text(v)) for k, v in candidates if v not in (None, "")]


def _events(annotations: object) -> list[object]:
    return [
        {"Timestamp": micros_to_ns(a.get("timestamp")), "Name": attr_text(a.get("value", "")),
         "Attributes": []}
        for a in (annotations if isinstance(annotations, list) else [])
        if isinstance(a, dict)
    ]


def _span_row(span: dict[str, Any], pos: str) -> dict[str, object]:
    raw_tags = span.get("tags")
    tags = {str(k): attr_text(v) for k, v in raw_tags.items()} if isinstance(raw_tags, dict) else {}
    kind_tag = tags.pop("span.kind", None)
    kind_value = span.get("kind") or kind_tag
    kind = SpanKind.from_otlp(attr_text(kind_value) if kind_value is not None else None)
    status, message = _status(tags)
    scope = tags.pop("otel.scope.name", tags.pop("otel.library.name", None))
    scope_version = tags.pop("otel.scope.version", tags.pop("otel.library.version", None))
    trace_state = tags.pop("w3c.tracestate", None)
    local = _endpoint(span.get("localEndpoint"))
    service = local.get("serviceName")
    service = attr_text(service) if service not in (None, "") else None
    attrs = list(tags.items()) + _peer_attributes(_endpoint(span.get("remoteEndpoint")), tags)
    attrs += [(f"zipkin.{flag}", "true") for flag in ("shared", "debug") if span.get(flag) is True]
    start = micros_to_ns(span.get("timestamp"))
    # Zipkin omits duration when unknown (e.g. an instant span): keep the span, zero length.
    duration = micros_to_ns(span.get("duration")) or 0
    return {
        "Pos": pos,
        "RecordBytes": record_size(span),
        "StartNs": start,
        "EndNs": end_ns(start, duration),
        "TraceId": pad_id(span.get("traceId"), TRACE_ID_HEX),
        "SpanId": pad_id(span.get("id"), SPAN_ID_HEX),
        "ParentSpanId": pad_id(span.get("parentId"), SPAN_ID_HEX) or "",
        "TraceState": trace_state,
        "SpanName": attr_text(span["name"]) if span.get("name") is not None else None,
        "SpanKind": kind.value,
        "ServiceName": service,
        "ResourceAttributes": _resource(local, service),
        "ScopeName": scope,
        "ScopeVersion": scope_version,
        "SpanAttributes": attrs,
        "StatusCode": status.value,
        "StatusMessage": message,
        "Events": _events(span.get("annotations")),
        "Links": [],
    }


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    """Zipkin v2 JSON → staged spans; elements that are not span objects become rejects."""
    out = Decoded()
    doc = load_document(data, out.rejects)
    if doc is NOT_LOADED:
        return out
    if not isinstance(doc, list | dict):
        out.rejects.append(Reject(Signal.TRACES, "document", QuarantineReason.BAD_SHAPE,
                                  data.decode(), "expected a list of Zipkin v2 spans"))
        return out
    rows: list[dict[str, object]] = []
    for pos, span in _records(doc):
        if isinstance(span, dict):
            rows.append(_span_row(span, pos))
        else:
            out.rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.BAD_SHAPE,
                                      orjson.dumps(span).decode(), "span is not an object"))
    if rows:
        out.spans.append(span_table(rows))
    return out
