"""The dashboard's server-rendered pages: one route per page, each a read of the store.

Each request opens the store read-only in a worker thread (inside `telltale serve` that is a
cursor of the server's own database) and closes it before rendering. A bad query parameter is a
400 page naming it; an unknown service or trace is a 404. The Jinja2 environment is here too:
autoescaped, strict about undefined names, with the filters that format numbers for people.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from telltale.settings import Settings
from telltale.store import Store, StoreError
from telltale.web import page_data, params
from telltale.web.params import BadParam, Window, iso

NAV = [("/", "Overview"), ("/services", "Services"), ("/map", "Service map"),
       ("/traces", "Traces"), ("/quality", "Data quality"), ("/logs", "Logs"), ("/ci", "CI"),
       ("/agents", "Agents"), ("/more", "More")]

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("telltale.web", "templates"),
    autoescape=True,  # every value from telemetry is escaped; only producer SVG is Markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def fmt_ms(ms: float | None) -> str:
    if ms is None or ms != ms:
        return "–"
    if ms >= 1000:
        return f"{ms / 1000:,.2f} s"
    if ms >= 10:
        return f"{ms:,.0f} ms"
    if ms >= 1:
        return f"{ms:.1f} ms"
    return f"{ms * 1000:.0f} µs"


def fmt_num(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{value:,}"


def fmt_pct(fraction: float | None) -> str:
    return "–" if fraction is None else f"{100.0 * fraction:.1f} %"


def fmt_cell(value: Any) -> str:
    """A cell of a generic analysis table (`Rows`)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return fmt_num(value)
    if isinstance(value, list | tuple):
        return ", ".join(fmt_cell(v) for v in value)
    return "–" if value is None else str(value)


def with_query(path: str, query: dict[str, str], **extra: str) -> str:
    merged = {**query, **{k: v for k, v in extra.items() if v}}
    return path + ("?" + urlencode(sorted(merged.items())) if merged else "")


ENV.filters.update(ms=fmt_ms, num=fmt_num, pct=fmt_pct, cell=fmt_cell, iso=iso,
                   path=lambda s: quote(str(s), safe=""))
ENV.globals.update(nav=NAV, with_query=with_query)


def render(template: str, *, status: int = 200, current: str = "/", win: Window | None = None,
           **context: Any) -> HTMLResponse:
    page = ENV.get_template(template).render(current=current, win=win,
                                              wq=win.query if win else {}, **context)
    return HTMLResponse(page, status_code=status)


Gather = Callable[[Store, Window], dict[str, Any] | None]


def open_store(settings: Settings) -> Store:
    return Store(settings.db_path, settings=settings, read_only=True)


def page(settings: Settings, template: str, gather: Gather, *,
         missing: str = "not found") -> Callable[[Request], Any]:
    async def handler(request: Request) -> Response:
        def work() -> Response:
            try:
                with open_store(settings) as store:
                    win = params.window(store, request.query_params)
                    context = gather(store, win)
            except BadParam as exc:
                return render("error.html", status=400, current=request.url.path,
                              title="Bad request", message=str(exc))
            except StoreError as exc:
                return render("error.html", status=503, current=request.url.path,
                              title="No store", message=str(exc))
            if context is None:
                return render("error.html", status=404, current=request.url.path, win=win,
                              title="Not found", message=missing)
            return render(template, current=request.url.path, win=win, **context)
        return await run_in_threadpool(work)
    return handler


def page_routes(settings: Settings) -> list[Route]:
    def service(request: Request) -> Gather:
        name = request.path_params["name"]
        return lambda store, win: page_data.service_page(store, win, name)

    def trace(request: Request) -> Gather:
        tid = params.trace_id(request.path_params["trace_id"])
        return lambda store, win: page_data.trace_page(store, tid)

    def search(request: Request) -> Gather:
        attrs = request.query_params.getlist("attr")
        return lambda store, win: page_data.search_page(store, win, request.query_params, attrs)

    def quality(request: Request) -> Gather:
        by = params.choice(request.query_params, "by", ("source", "service"), "source")
        return lambda store, win: page_data.quality_page(store, win, by)

    def static(gather: Gather) -> Callable[[Request], Gather]:
        return lambda _request: gather

    def more(_store: Store, _win: Window) -> dict[str, Any]:
        return {}

    pages: list[tuple[str, str, Callable[[Request], Gather], str]] = [
        ("/", "overview.html", static(page_data.overview_page), ""),
        ("/services", "services.html", static(page_data.services_page), ""),
        ("/services/{name:path}", "service.html", service, "no spans of this service in the window"),
        ("/map", "map.html", static(page_data.map_page), ""),
        ("/traces", "traces.html", search, ""),
        ("/traces/{trace_id}", "trace.html", trace, "no span of this trace is stored"),
        ("/quality", "quality.html", quality, ""),
        ("/logs", "logs.html", static(page_data.logs_page), ""),
        ("/ci", "ci.html", static(page_data.ci_page), ""),
        ("/agents", "agents.html", static(page_data.agents_page), ""),
        ("/more", "more.html", static(more), ""),
    ]
    return [Route(path, _dispatch(settings, template, pick, missing), methods=["GET", "HEAD"])
            for path, template, pick, missing in pages]


def _dispatch(settings: Settings, template: str, pick: Callable[[Request], Gather],
              missing: str) -> Callable[[Request], Any]:
    """Read the path and query parameters first (a bad one is a 400), then serve the page."""
    async def handler(request: Request) -> Response:
        try:
            gather = pick(request)
        except BadParam as exc:
            return render("error.html", status=400, current=request.url.path, title="Bad request",
                          message=str(exc))
        serve = page(settings, template, gather, missing=missing or "not found")
        response: Response = await serve(request)
        return response
    return handler
