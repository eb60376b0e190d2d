"""The dashboard's JSON API under `/api/` (read-only; described by `/api/openapi.json`).

Each endpoint returns an analysis result as its `to_rows()` JSON (title, columns, rows, notes,
extras) plus the window it covered. Window parameters (`since`, `until`, `last`) work as on the
pages; a parameter that cannot be read is a 400 `{"error": "..."}`. Jaeger-compatible endpoints
(`/api/services`, `/api/traces`, ...) live in web/jaeger.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from telltale.analyses import agents, ci
from telltale.analyses.critical_path import critical_path
from telltale.analyses.deps import dependencies
from telltale.analyses.heatmap import heatmap
from telltale.analyses.log_templates import load_miner
from telltale.analyses.overview import overview
from telltale.analyses.profile import ProfileBy, SortKey, profile
from telltale.analyses.quality import GroupBy, quality
from telltale.analyses.trace_detail import load_trace, search_traces
from telltale.render import quality as quality_render
from telltale.settings import Settings
from telltale.store import Store, StoreError
from telltale.web import page_data, params
from telltale.web.params import BadParam, Window

Handler = Callable[[Store, Window, Request], dict[str, Any] | None]


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
                            | orjson.OPT_NON_STR_KEYS)


def error(status: int, message: str) -> JSON:
    return JSON({"error": message}, status_code=status)


def _window(win: Window) -> dict[str, Any]:
    return {"since_ns": win.lo, "until_ns": win.hi, "data_since_ns": win.data_lo,
            "data_until_ns": win.data_hi}


def endpoint(settings: Settings, handler: Handler, missing: str = "not found"
             ) -> Callable[[Request], Any]:
    async def serve(request: Request) -> Response:
        def work() -> Response:
            try:
                with Store(settings.db_path, settings=settings, read_only=True) as store:
                    win = params.window(store, request.query_params)
                    body = handler(store, win, request)
            except (BadParam, ValueError) as exc:
                return error(400, str(exc).splitlines()[0])
            except StoreError as exc:
                return error(503, str(exc))
            if body is None:
                return error(404, missing)
            return JSON({"window": _window(win), **body})
        return await run_in_threadpool(work)
    return serve


def _filters(request: Request) -> tuple[tuple[str, ...], tuple[str, ...]]:
    q = request.query_params
    return tuple(v for v in q.getlist("service") if v), tuple(v for v in q.getlist("operation") if v)


def api_overview(store: Store, win: Window, _r: Request) -> dict[str, Any]:
    data = page_data.overview_page(store, win)
    ov, report = data["ov"], data["quality"]
    return {"counts": ov.counts, "spans": data["spans"], "errors": data["errors"],
            "traces": data["traces"],
            "quality_score": None if report is None else report.total.score,
            "services": [dataclasses.asdict(s) | {"error_rate": s.error_rate} for s in ov.services],
            "hotspots": [dataclasses.asdict(h) | {"error_rate": h.error_rate} for h in ov.hotspots],
            "open_spans": [dataclasses.asdict(o) for o in ov.open_spans]}


def api_quality(store: Store, win: Window, r: Request) -> dict[str, Any]:
    by = params.choice(r.query_params, "by", ("source", "service"), "source")
    if win.lo is None:
        return {"report": None}
    report = quality(store, by=GroupBy(by), since=win.since, until=win.until)
    return {"report": orjson.loads(quality_render.to_json(report))}


def api_profile(store: Store, win: Window, r: Request) -> dict[str, Any]:
    q = r.query_params
    by = params.choice(q, "by", ("service", "operation"), "operation")
    sort = params.choice(q, "sort", ("p95", "count", "errors"), "p95")
    prof = profile(store, win.scope(*_filters(r)), by=ProfileBy(by), sort=SortKey(sort))
    return {"result": prof.to_rows().to_dict()}


def api_heatmap(store: Store, win: Window, r: Request) -> dict[str, Any]:
    by = params.choice(r.query_params, "by", ("service", "operation"), "operation")
    heat = heatmap(store, win.scope(*_filters(r)), by=by)
    return {"result": heat.to_rows().to_dict(), "busiest": heat.hot_rows()[0].to_dict()}


def api_service_map(store: Store, win: Window, r: Request) -> dict[str, Any]:
    level = params.choice(r.query_params, "level", ("service", "operation"), "service")
    return {"result": dependencies(store, win.scope(*_filters(r)), level=level).to_rows().to_dict()}


def api_trace_search(store: Store, win: Window, r: Request) -> dict[str, Any]:
    _form, filters = page_data.search_form(r.query_params, r.query_params.getlist("attr"))
    found = search_traces(store, since=win.since, until=win.until, **filters)
    return {"traces": [dataclasses.asdict(t) for t in found]}


def api_trace(store: Store, _win: Window, r: Request) -> dict[str, Any] | None:
    trace = load_trace(store, params.trace_id(r.path_params["trace_id"]))
    if trace is None:
        return None
    path = critical_path(store, trace.trace_id)
    return {"trace_id": trace.trace_id, "spans": [dataclasses.asdict(s) for s in trace.spans],
            "critical_path": [rows.to_dict() for rows in path.to_rows()]}


def api_logs(store: Store, _win: Window, _r: Request) -> dict[str, Any]:
    miner = load_miner(store)
    top = sorted(miner.templates.values(), key=lambda t: (-t.count, t.id))
    return {"logs": overview(store).counts.get("logs", 0),
            "templates": [{"id": t.id, "template": t.text, "count": t.count,
                           "first_seen_ns": t.first_seen, "last_seen_ns": t.last_seen}
                          for t in top]}


def api_ci(store: Store, win: Window, _r: Request) -> dict[str, Any]:
    scope = win.scope()
    return {"runs": ci.summary(store, scope, "run").to_rows().to_dict(),
            "jobs": ci.summary(store, scope, "job").to_rows().to_dict(),
            "flaky": ci.flaky(store, scope).to_rows().to_dict(),
            "findings": ci.rules(store, scope).to_rows().to_dict()}


def api_agents(store: Store, win: Window, _r: Request) -> dict[str, Any]:
    scope = win.scope()
    return {"summary": agents.summarise(store, scope).to_rows().to_dict(),
            "worst": agents.worst(store, scope).to_rows().to_dict()}


async def health(_: Request) -> Response:
    return JSON({"status": "ok"})


HANDLERS: list[tuple[str, Handler, str]] = [
    ("/api/overview", api_overview, "Totals, per-service traffic, error hotspots, open spans"),
    ("/api/quality", api_quality, "Data-quality report by source or service"),
    ("/api/profile", api_profile, "Latency profile per service or operation"),
    ("/api/heatmap", api_heatmap, "Latency heatmap cells (long format)"),
    ("/api/service-map", api_service_map, "Service dependency graph edges"),
    ("/api/trace-search", api_trace_search, "Traces matching filters, newest first"),
    ("/api/trace/{trace_id}", api_trace, "One trace's spans and its critical path"),
    ("/api/logs", api_logs, "Log record count and mined log templates"),
    ("/api/ci", api_ci, "CI run and job summaries, flaky jobs, rule findings"),
    ("/api/agents", api_agents, "Agent and LLM-call outcomes per model and role"),
]


def api_routes(settings: Settings) -> list[Route]:
    routes = [Route("/api/health", health, methods=["GET"])]
    routes += [Route(path, endpoint(settings, fn, "no span of this trace is stored"),
                     methods=["GET"]) for path, fn, _summary in HANDLERS]
    return routes
