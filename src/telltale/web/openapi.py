"""The OpenAPI 3.1 description of every `/api/` route, served at `/api/openapi.json`.

The dashboard's own endpoints and the Jaeger query API are described by hand below; a route
mounted under `/api/` that has no description here still gets a minimal entry (built from the
app's routes), so the document never leaves a route out.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import BaseRoute, Route

from telltale.web.api import HANDLERS

Doc = dict[str, Any]

_JSON_OBJECT: Doc = {"type": "object", "additionalProperties": True}
_ERROR: Doc = {"description": "An error, one line",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _q(name: str, description: str, schema: Doc | None = None, *, many: bool = False) -> Doc:
    base = schema or {"type": "string"}
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "array", "items": base} if many else base,
            **({"explode": True} if many else {})}


def _path(name: str, description: str) -> Doc:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


WINDOW = [_q("since", "Start: ISO-8601, epoch, or a duration before the end (30m)"),
          _q("until", "End (exclusive): ISO-8601, epoch, or a duration before the end of data"),
          _q("last", "A window of this length ending at `until` or the end of the data (1h)")]
FILTERS = [_q("service", "Only this service (repeatable)", many=True),
           _q("operation", "Only this operation / span name (repeatable)", many=True)]
SEARCH = [_q("service", "Service of a matching span"), _q("operation", "Span name of a matching span"),
          _q("min_duration", "Span duration at least this (250ms, 1.5s, or milliseconds)"),
          _q("max_duration", "Span duration at most this"),
          _q("errors", "Only traces with a failing matching span", {"type": "boolean"}),
          _q("attr", "Attribute filter key=value on span or resource attributes (repeatable)",
             many=True),
          _q("limit", "At most this many traces (1-500, default 50)",
             {"type": "integer", "minimum": 1, "maximum": 500})]

EXTRA_PARAMS: dict[str, list[Doc]] = {
    "/api/quality": [_q("by", "Group by", {"type": "string", "enum": ["source", "service"]})],
    "/api/profile": [*FILTERS, _q("by", "Group by", {"type": "string", "enum": ["service", "operation"]}),
                     _q("sort", "Order", {"type": "string", "enum": ["p95", "count", "errors"]})],
    "/api/heatmap": [*FILTERS, _q("by", "Group by", {"type": "string", "enum": ["service", "operation"]})],
    "/api/service-map": [*FILTERS, _q("level", "Graph level",
                                      {"type": "string", "enum": ["service", "operation"]})],
    "/api/trace-search": SEARCH,
    "/api/trace/{trace_id}": [_path("trace_id", "Trace id, hex (up to 32 digits)")],
}

# The Jaeger query API (what Jaeger UI and Grafana's Jaeger data source call); see web/jaeger.py.
JAEGER: dict[str, tuple[str, list[Doc]]] = {
    "/api/services": ("Jaeger: service names", []),
    "/api/services/{service}/operations": ("Jaeger: operation names of a service",
                                           [_path("service", "Service name")]),
    "/api/operations": ("Jaeger: operations of a service, with span kind",
                        [_q("service", "Service name"), _q("spanKind", "Span kind")]),
    "/api/traces": ("Jaeger: trace search", [
        _q("service", "Service name"), _q("operation", "Operation name"),
        _q("tags", "JSON object of tag filters"), _q("start", "Start, µs since the epoch"),
        _q("end", "End, µs since the epoch"), _q("lookback", "Look back (1h) when no start"),
        _q("minDuration", "Minimum duration (100ms)"), _q("maxDuration", "Maximum duration"),
        _q("limit", "At most this many traces", {"type": "integer"}),
        _q("traceID", "Trace ids to fetch (repeatable)", many=True)]),
    "/api/traces/{trace_id}": ("Jaeger: one trace", [_path("trace_id", "Trace id, hex")]),
    "/api/dependencies": ("Jaeger: service dependency links", [
        _q("endTs", "End, ms since the epoch", {"type": "integer"}),
        _q("lookback", "Window length, ms", {"type": "integer"})]),
    "/api/v3/services": ("Jaeger API v3: service names", []),
    "/api/v3/operations": ("Jaeger API v3: operations", [
        _q("service", "Service name"), _q("span_kind", "Span kind")]),  # as jaeger.py reads them
    "/api/v3/traces": ("Jaeger API v3: trace search (query.* parameters)", [
        _q("query.service_name", "Service name"), _q("query.operation_name", "Operation name"),
        _q("query.start_time_min", "Earliest start (RFC 3339)"),
        _q("query.start_time_max", "Latest start (RFC 3339)"),
        _q("query.duration_min", "Minimum duration"), _q("query.duration_max", "Maximum duration"),
        _q("query.num_traces", "At most this many traces", {"type": "integer"})]),
    "/api/v3/traces/{trace_id}": ("Jaeger API v3: one trace", [_path("trace_id", "Trace id, hex")]),
}


def _operation(summary: str, parameters: list[Doc], op_id: str, open_route: bool = False) -> Doc:
    op: Doc = {"summary": summary, "operationId": op_id, "parameters": parameters,
               "responses": {"200": {"description": "OK", "content": {
                   "application/json": {"schema": _JSON_OBJECT}}},
                   "400": _ERROR, "404": _ERROR}}
    if not open_route:
        op["responses"]["401"] = _ERROR
    else:
        op["security"] = []
    return op


def _op_id(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path.strip("/")).strip("_") or "root"


def route_paths(routes: list[BaseRoute]) -> list[str]:
    """OpenAPI paths of the app's `/api/` routes (`{name:converter}` → `{name}`)."""
    out = []
    for route in routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            out.append(re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
    return sorted(set(out))


def openapi_document(routes: list[BaseRoute]) -> Doc:
    paths: Doc = {
        "/api/health": {"get": _operation("Liveness (open without the token)", [], "health",
                                          open_route=True)},
        "/api/openapi.json": {"get": _operation("This document", [], "openapi")},
    }
    for path, _fn, summary in HANDLERS:
        paths[path] = {"get": _operation(summary, [*WINDOW, *EXTRA_PARAMS.get(path, [])],
                                         _op_id(path))}
    mounted = route_paths(routes)
    for path, (summary, parameters) in JAEGER.items():
        if path in mounted:
            paths[path] = {"get": _operation(summary, parameters, _op_id(path))}
    for path in mounted:
        if path not in paths:
            names = re.findall(r"\{(\w+)\}", path)
            paths[path] = {"get": _operation(f"GET {path}", [_path(n, n) for n in names],
                                             _op_id(path))}
    return {
        "openapi": "3.1.0",
        "info": {"title": "telltale dashboard API", "version": "1",
                 "description": "Read-only JSON over a telltale store. With a token set, send "
                                "`Authorization: Bearer TOKEN` (or the cookie set by /login)."},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],  # needed only when the server has a token
    }
