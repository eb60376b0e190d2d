"""A Jaeger-compatible query API, so the Jaeger UI and Grafana's Jaeger data source read telltale.

Jaeger's HTTP JSON API (`/api/...`, the one its UI uses) and its OTLP-native API (`/api/v3/...`):

    GET /api/services                       {"data": ["svc", ...], "total": n, ...}
    GET /api/services/{service}/operations  operation names
    GET /api/operations?service=&spanKind=  [{"name", "spanKind"}]
    GET /api/traces?service=&operation=&tags=&minDuration=&maxDuration=&start=&end=&limit=
                   (or ?traceID=a&traceID=b)     full traces, newest first
    GET /api/traces/{traceID}                one trace; 404 {"errors": [{"code": 404, ...}]}
    GET /api/dependencies?endTs=&lookback=   [{"parent", "child", "callCount"}]
    GET /api/v3/services | /api/v3/operations?service= | /api/v3/traces?query.service_name=...
        | /api/v3/traces/{trace_id}          OTLP JSON: {"result": {"resourceSpans": [...]}}

Each request opens the store read-only in a worker thread (DuckDB work blocks) and closes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from telltale.analyses.deps import dependencies
from telltale.analyses.scope import Scope
from telltale.analyses.trace_detail import (
    SpanDetail,
    TraceDetail,
    load_trace,
    load_traces,
    search_traces,
)
from telltale.settings import Settings
from telltale.store import Store, StoreError, StoreLockedError, jaeger_sql
from telltale.web.jaeger_model import error_response, jaeger_kind, jaeger_trace, response
from telltale.web.jaeger_otlp import traces_data
from telltale.web.jaeger_query import (
    ParamError,
    Params,
    TraceQuery,
    parse_dependencies,
    parse_trace_query,
    parse_v3_query,
    trace_id,
)

Json = dict[str, Any]
Answer = tuple[int, Json]
Handler = Callable[[Store, Params, dict[str, str]], Answer]

TRACE_NOT_FOUND = "trace not found"  # Jaeger's spanstore.ErrTraceNotFound


# -- the v1 JSON API -------------------------------------------------------------------------


def _services(store: Store, params: Params, path: dict[str, str]) -> Answer:
    names = jaeger_sql.services(store.con)
    return 200, response(names, total=len(names))


def _operation_names(store: Store, params: Params, path: dict[str, str]) -> Answer:
    names = sorted({name for name, _ in jaeger_sql.operations(store.con, path["service"])})
    return 200, response(names, total=len(names))


def _operations(store: Store, service: str | None, span_kind: str) -> list[Json]:
    """Distinct (name, Jaeger span kind) of a service, optionally of one kind."""
    pairs = {(name, jaeger_kind(kind)) for name, kind in jaeger_sql.operations(store.con, service)}
    return [{"name": n, "spanKind": k} for n, k in sorted(pairs)
            if not span_kind or k == span_kind.lower()]


def _operations_v1(store: Store, params: Params, path: dict[str, str]) -> Answer:
    if not params.get("service"):
        raise ParamError("parameter 'service' is required")
    ops = _operations(store, params.get("service"), params.get("spanKind"))
    return 200, response(ops, total=len(ops))


def _find(store: Store, q: TraceQuery) -> list[TraceDetail]:
    hits = search_traces(store, service=q.service, operation=q.operation, since=q.since_ns,
                         until=q.until_ns, min_duration_ns=q.min_duration_ns,
                         max_duration_ns=q.max_duration_ns, errors_only=q.errors_only,
                         attributes=q.attributes, limit=q.limit)
    traces = load_traces(store, [h.trace_id for h in hits])  # one scan for the page
    return [traces[h.trace_id] for h in hits if h.trace_id in traces]


def _search(store: Store, params: Params, path: dict[str, str]) -> Answer:
    q = parse_trace_query(params, store.settings.clock())
    if not q.trace_ids:
        return 200, response([jaeger_trace(t) for t in _find(store, q)])
    found = load_traces(store, list(q.trace_ids))
    traces = [jaeger_trace(found[t]) for t in q.trace_ids if t in found]
    errors = [{"msg": TRACE_NOT_FOUND, "traceID": t} for t in q.trace_ids if t not in found]
    return 200, response(traces, errors=errors or None)


def _trace(store: Store, params: Params, path: dict[str, str]) -> Answer:
    trace = load_trace(store, trace_id(path["trace_id"]))
    if trace is None:
        return 404, error_response(404, TRACE_NOT_FOUND)
    return 200, response([jaeger_trace(trace)])


def _dependencies(store: Store, params: Params, path: dict[str, str]) -> Answer:
    """Caller → callee call counts over spans starting in [endTs - lookback, endTs]; peers
    known only from client spans (databases, brokers, external APIs) are included as children,
    so the Jaeger UI's graph shows them too."""
    since, until = parse_dependencies(params, store.settings.clock())
    calls: Counter[tuple[str, str]] = Counter()
    for edge in dependencies(store, Scope(since, until)).edges:
        calls[(edge.caller, edge.callee)] += edge.calls
    service = params.get("service")
    links = [{"parent": p, "child": c, "callCount": n} for (p, c), n in sorted(calls.items())
             if not service or service in (p, c)]
    return 200, response(links)


# -- the OTLP-native v3 API ------------------------------------------------------------------


def _v3_services(store: Store, params: Params, path: dict[str, str]) -> Answer:
    return 200, {"services": jaeger_sql.services(store.con)}


def _v3_operations(store: Store, params: Params, path: dict[str, str]) -> Answer:
    ops = _operations(store, params.get("service") or None, params.get("span_kind"))
    return 200, {"operations": ops}


def _v3_trace(store: Store, params: Params, path: dict[str, str]) -> Answer:
    try:
        tid = trace_id(path["trace_id"])
    except ParamError as exc:
        raise ParamError(f"malformed parameter trace_id: {exc}") from None
    trace = load_trace(store, tid)
    if trace is None:
        return 404, _v3_error(404, TRACE_NOT_FOUND)
    return 200, {"result": traces_data(trace.spans)}


def _v3_find(store: Store, params: Params, path: dict[str, str]) -> Answer:
    spans: list[SpanDetail] = [s for t in _find(store, parse_v3_query(params)) for s in t.spans]
    return 200, {"result": traces_data(spans)}


def _v3_error(code: int, message: str) -> Json:
    return {"error": {"httpCode": code, "message": message}}


# -- plumbing --------------------------------------------------------------------------------


def _json(status: int, body: Json) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _endpoint(settings: Settings, handler: Handler, *, v3: bool = False
              ) -> Callable[[Request], Awaitable[Response]]:
    def error(code: int, message: str) -> Answer:
        return code, (_v3_error(code, message) if v3 else error_response(code, message))

    def run(params: Params, path: dict[str, str]) -> Answer:
        try:
            with Store(settings.db_path, settings=settings, read_only=True) as store:
                return handler(store, params, path)
        except ParamError as exc:
            return error(400, str(exc))
        except (StoreError, StoreLockedError) as exc:
            return error(503, str(exc))

    async def endpoint(request: Request) -> Response:
        params = Params(request.query_params.multi_items())
        path = {k: str(v) for k, v in request.path_params.items()}
        status, body = await run_in_threadpool(run, params, path)
        return _json(status, body)

    return endpoint


def jaeger_routes(settings: Settings) -> list[BaseRoute]:
    """The Jaeger query API's routes, to mount at the root of the dashboard app."""
    v1: list[tuple[str, Handler]] = [
        ("/api/services", _services),
        ("/api/services/{service:path}/operations", _operation_names),
        ("/api/operations", _operations_v1),
        ("/api/traces", _search),
        ("/api/traces/{trace_id}", _trace),
        ("/api/dependencies", _dependencies),
    ]
    v3: list[tuple[str, Handler]] = [
        ("/api/v3/services", _v3_services),
        ("/api/v3/operations", _v3_operations),
        ("/api/v3/traces", _v3_find),
        ("/api/v3/traces/{trace_id}", _v3_trace),
    ]
    routes: list[BaseRoute] = [Route(p, _endpoint(settings, h), methods=["GET"]) for p, h in v1]
    routes += [Route(p, _endpoint(settings, h, v3=True), methods=["GET"]) for p, h in v3]
    return routes
