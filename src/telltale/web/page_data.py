"""What each dashboard page shows, gathered from the analyses (the web layer holds no logic).

Every function takes an open store and the resolved window and returns the template context:
typed analysis results plus the few derived values a page needs (links, the critical set).
The JSON API serves the same results through their `to_rows()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup

from telltale.analyses import agents, ci
from telltale.analyses.critical_path import critical_path
from telltale.analyses.deps import DependencyGraph, dependencies
from telltale.analyses.heatmap import Heatmap, heatmap, with_slowest
from telltale.analyses.log_analytics import template_counts, trend
from telltale.analyses.log_links import logs_of_trace
from telltale.analyses.overview import overview
from telltale.analyses.profile import ProfileBy, SortKey, profile, span_rank
from telltale.analyses.quality import GroupBy, quality
from telltale.analyses.scope import Scope
from telltale.analyses.trace_detail import SpanDetail, TraceDetail, load_trace, search_traces
from telltale.model import QualityFlag
from telltale.render.mermaid_trace import sequence_diagram
from telltale.render.svg.charts import volume_svg
from telltale.render.svg.heatmap import heatmap_svg
from telltale.render.svg.service_map import service_map_svg
from telltale.render.svg.waterfall import tree_order, waterfall_svg
from telltale.report.collect import volume_series  # the report's series, shared
from telltale.store import Store
from telltale.web import params
from telltale.web.params import Window

# -- the pictures: drawn (and escaped) by the render layer, so marked safe here only --


def service_href(name: str) -> str:
    return "/services/" + quote(name, safe="")


def search_href(**filters: str) -> str:
    return "/traces?" + urlencode(sorted((k, v) for k, v in filters.items() if v))


def heatmap_picture(heat: Heatmap) -> Markup:
    return Markup(heatmap_svg(heat))


def waterfall(trace: TraceDetail, critical: set[str]) -> Markup:
    def anchor(span: SpanDetail) -> str:
        return f"#span-{span.span_id}"
    return Markup(waterfall_svg(trace, frozenset(critical), link=anchor))


def service_map(graph: DependencyGraph, window_query: dict[str, str]) -> Markup:
    """Service nodes link to their page (which links on to their traces), keeping the window."""
    suffix = "?" + urlencode(sorted(window_query.items())) if window_query else ""
    return Markup(service_map_svg(graph, link=lambda name: service_href(name) + suffix))


def volume(store: Store, scope: Scope, heat: Heatmap) -> Markup | None:
    """Spans and error spans per time bucket (the heatmap's buckets), as the report draws them."""
    counts = volume_series(store, scope, heat)
    if counts is None:
        return None
    return Markup(volume_svg(counts.time_edges, counts.spans, counts.errors))


def sequence(trace: TraceDetail) -> str:
    """Mermaid sequence-diagram text (plain text: the template escapes it)."""
    return sequence_diagram(trace)


# -- the pages --


def overview_page(store: Store, win: Window) -> dict[str, Any]:
    lo, hi = win.lo, win.hi
    ov = overview(store, since=lo or 0, until=hi if hi is not None else 2**62)
    report = quality(store, since=win.since, until=win.until) if lo is not None else None
    slowest = profile(store, win.scope(), by=ProfileBy.OPERATION, sort=SortKey.P95).rows[:8]
    spans = sum(s.spans for s in ov.services)
    errors = sum(s.errors for s in ov.services)
    heat = heatmap(store, win.scope(), by="service")
    return {"ov": ov, "quality": report, "slowest": slowest, "spans": spans, "errors": errors,
            "traces": sum(s.traces for s in ov.services),
            "volume": volume(store, win.scope(), heat)}


def services_page(store: Store, win: Window) -> dict[str, Any]:
    prof = profile(store, win.scope(), by=ProfileBy.SERVICE, sort=SortKey.COUNT)
    heat = heatmap(store, win.scope(), by="service")
    return {"profile": prof, "heatmap": heatmap_picture(heat)}


def service_page(store: Store, win: Window, name: str) -> dict[str, Any] | None:
    scope = win.scope(services=(name,))
    prof = profile(store, scope, by=ProfileBy.OPERATION, sort=SortKey.COUNT)
    if not prof.rows:
        return None
    # Slow for itself (p95 against the operation's usual p95), not merely the slowest operation.
    heat = with_slowest(store, scope, heatmap(store, scope, by="operation"), rank="ratio", top=5)
    graph = dependencies(store, scope)
    return {"name": name, "profile": prof, "heatmap": heatmap_picture(heat), "heat": heat,
            "callers": [e for e in graph.edges if e.callee == name],
            "callees": [e for e in graph.edges if e.caller == name],
            "traces_href": search_href(service=name, **win.query),
            "errors_href": search_href(service=name, errors="true", **win.query)}


def map_page(store: Store, win: Window) -> dict[str, Any]:
    graph: DependencyGraph = dependencies(store, win.scope())
    return {"graph": graph, "svg": service_map(graph, win.query)}


@dataclass(frozen=True)
class SearchForm:
    """The trace-search filters as asked (for the form) and as parsed (for the search)."""

    service: str
    operation: str
    min_duration: str
    max_duration: str
    errors: bool
    attrs: str
    limit: int


def search_form(query: Mapping[str, str], attrs: list[str]) -> tuple[SearchForm, dict[str, Any]]:
    form = SearchForm(
        (query.get("service") or "").strip(), (query.get("operation") or "").strip(),
        (query.get("min_duration") or "").strip(), (query.get("max_duration") or "").strip(),
        params.flag(query, "errors"), "\n".join(a for a in attrs if a.strip()),
        params.limit(query))
    filters = {"service": form.service or None, "operation": form.operation or None,
               "min_duration_ns": params.duration(query, "min_duration"),
               "max_duration_ns": params.duration(query, "max_duration"),
               "errors_only": form.errors, "attributes": params.attributes(query, attrs),
               "limit": form.limit}
    return form, filters


def search_page(store: Store, win: Window, query: Mapping[str, str],
                attrs: list[str]) -> dict[str, Any]:
    form, filters = search_form(query, attrs)
    found = search_traces(store, since=win.since, until=win.until, **filters)
    services = [s.service for s in overview(store).services]
    return {"form": form, "results": found, "services": services}


@dataclass(frozen=True)
class SpanRow:
    span: SpanDetail
    depth: int
    offset_ms: float
    critical: bool


def trace_page(store: Store, trace_id: str) -> dict[str, Any] | None:
    trace: TraceDetail | None = load_trace(store, trace_id)
    if trace is None:
        return None
    path = critical_path(store, trace.trace_id)
    critical = {seg.span_id for seg in path.segments}
    rows = [SpanRow(s, depth, (s.start_ns - trace.start_ns) / 1e6, s.span_id in critical)
            for s, depth in tree_order(trace)]
    root = path.root
    rank = span_rank(store, trace.trace_id, root.span_id) if root.span_id else None
    return {"trace": trace, "path": path, "rows": rows, "critical": critical,
            "waterfall": waterfall(trace, critical), "rank": rank,
            "services": sorted({s.service for s in trace.spans}),
            "errors": sum(1 for s in trace.spans if s.error),
            "sequence": sequence(trace), "logs": logs_of_trace(store, trace.trace_id)}


def quality_page(store: Store, win: Window, by: str) -> dict[str, Any]:
    if win.lo is None:
        return {"report": None, "by": by, "flags": QualityFlag}
    return {"report": quality(store, by=GroupBy(by), since=win.since, until=win.until),
            "by": by, "flags": QualityFlag}


def logs_page(store: Store, win: Window) -> dict[str, Any]:
    """Templates in the window by count, with error share; with a window start, also the
    templates new or significantly changed against the window just before it."""
    page: dict[str, Any] = {"logs": overview(store).counts.get("logs", 0), "counts": None,
                            "trend": None, "problem": None}
    try:
        page["counts"] = template_counts(store, win.since, win.until, top=100)
        if win.since is not None:
            page["trend"] = trend(store, win.since, win.until)
    except ValueError as exc:  # a store from before templates, or an empty window
        page["problem"] = str(exc)
    return page


def ci_page(store: Store, win: Window) -> dict[str, Any]:
    scope = win.scope()
    runs = ci.summary(store, scope, "run")
    jobs = ci.summary(store, scope, "job")
    return {"runs": runs.to_rows(), "jobs": jobs.to_rows(),
            "flaky": ci.flaky(store, scope).to_rows(), "findings": ci.rules(store, scope).to_rows(),
            "has_data": bool(runs.rows)}


def agents_page(store: Store, win: Window) -> dict[str, Any]:
    scope = win.scope()
    summary = agents.summarise(store, scope)
    return {"summary": summary.to_rows(), "worst": agents.worst(store, scope).to_rows(),
            "has_data": bool(summary.groups)}
