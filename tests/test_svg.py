"""The SVG charts: well-formed XML, hostile names escaped, deterministic, and drawing what the
analysis results say (cell counts, the red error edge, the critical-path highlight)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np

from telltale.analyses.deps import DependencyGraph, DepsLevel, Edge, EdgeKind
from telltale.analyses.heatmap import Heatmap, HeatmapBy, HeatRow
from telltale.analyses.trace_detail import SpanDetail, TraceDetail
from telltale.render.svg import (
    bar_chart_svg,
    heatmap_svg,
    service_map_svg,
    sparkline_svg,
    volume_svg,
    waterfall_svg,
)
from telltale.render.svg.service_map import layout

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert('x')</script> & \"q\""
MS = 1_000_000
T0 = 1_735_689_600 * 1_000_000_000


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    return root


def by_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{NS}{tag}") if cls in (e.get("class") or "").split()]


def no_script(svg: str) -> None:
    assert "<script" not in svg
    root = parse(svg)
    assert not list(root.iter(f"{NS}script"))
    # The hostile text survives as text, intact, after parsing.
    texts = "".join(root.itertext())
    assert HOSTILE in texts or "<script>" in texts


# -- heatmap ------------------------------------------------------------------------------------

def small_heatmap() -> Heatmap:
    a = np.zeros((3, 4), dtype=np.int64)  # 3 time buckets × 4 latency buckets
    a[0, 0], a[0, 3] = 10, 1  # p95 of 11 spans: bucket 3 (10 of 11 = 91 % below)
    a[2, 1] = 5
    b = np.zeros((3, 4), dtype=np.int64)
    b[1, 2] = 7
    edges = [T0 + i * 60_000_000_000 for i in range(4)]
    return Heatmap(HeatmapBy.OPERATION, 60_000_000_000, edges, [0.0, 1.0, 2.0, 4.0, 8.0],
                   [HeatRow("api", "GET /", a), HeatRow(HOSTILE, "op & <b>", b)])


def test_heatmap_cells_match_counts() -> None:
    heat = small_heatmap()
    root = parse(heatmap_svg(heat))
    cells = by_class(root, "rect", "cell")
    assert sorted(int(c.get("data-count", "0")) for c in cells) == [5, 7, 11]
    assert sum(int(c.get("data-count", "0")) for c in cells) == sum(g.total for g in heat.groups)
    bands = {int(c.get("data-count", "0")): int(c.get("data-band", "-1")) for c in cells}
    assert bands == {11: 3, 5: 1, 7: 2}
    # Every cell has a tooltip naming its count.
    for c in cells:
        tip = c.find(f"{NS}title")
        assert tip is not None and f"{c.get('data-count')} spans" in (tip.text or "")


def test_heatmap_count_metric_and_row_cap() -> None:
    heat = small_heatmap()
    svg = heatmap_svg(heat, metric="count", max_rows=1)
    root = parse(svg)
    cells = by_class(root, "rect", "cell")
    assert sorted(int(c.get("data-count", "0")) for c in cells) == [5, 11]  # busiest group only
    assert "1 quieter groups not shown" in "".join(root.itertext())
    colours = {c.get("data-count"): c.get("fill") for c in cells}
    assert colours["11"] != colours["5"]


def test_heatmap_escapes_and_is_deterministic() -> None:
    svg = heatmap_svg(small_heatmap())
    no_script(svg)
    assert svg == heatmap_svg(small_heatmap())


def test_heatmap_empty() -> None:
    svg = heatmap_svg(Heatmap(HeatmapBy.SERVICE, 1, [], [], []))
    assert "no spans" in "".join(parse(svg).itertext())


# -- waterfall ----------------------------------------------------------------------------------

def span(sid: str, parent: str, start_ms: int, dur_ms: int, *, service: str = "api",
         name: str = "op", error: bool = False) -> SpanDetail:
    return SpanDetail("t" * 32, sid, parent, name, "Server", service, T0 + start_ms * MS,
                      dur_ms * MS, "Error" if error else "Unset", "boom" if error else "", error)


def small_trace() -> TraceDetail:
    return TraceDetail("t" * 32, [
        span("a", "", 0, 100, name="GET /"),
        span("b", "a", 5, 40, service="db", name=HOSTILE),
        span("c", "a", 50, 45, service="auth", error=True),
        span("d", "c", 60, 10, service="auth", name="check"),
        span("z", "missing", 20, 5, service="lost"),
    ])


def test_waterfall_order_highlight_error_and_links() -> None:
    trace = small_trace()
    svg = waterfall_svg(trace, {"a", "c"}, link=lambda s: f"/span?id={s.span_id}&x=<1>")
    root = parse(svg)
    rows = [g for g in root.iter(f"{NS}g") if "span" in (g.get("class") or "").split()]
    # Tree order: root, its children by start (with their own children), then the orphan.
    assert [g.get("data-span-id") for g in rows] == ["a", "b", "c", "d", "z"]
    classes = {g.get("data-span-id"): set((g.get("class") or "").split()) for g in rows}
    assert "critical" in classes["a"] and "critical" in classes["c"]
    assert "critical" not in classes["b"] and "critical" not in classes["d"]
    assert "error" in classes["c"] and "error" not in classes["d"]
    red = [b for b in by_class(root, "rect", "bar") if "error" in (b.get("class") or "")]
    assert [b.get("fill") for b in red] == ["#d62728"]
    hrefs = [a.get("href") for a in root.iter(f"{NS}a")]
    assert hrefs[0] == "/span?id=a&x=<1>"  # escaped in the markup, intact once parsed
    assert "&amp;x=&lt;1&gt;" in svg
    # Bars: the root spans the full width; b starts 5 % in.
    bars = {g.get("data-span-id"): next(e for e in g.iter(f"{NS}rect") if "bar" in
                                        (e.get("class") or "").split()) for g in rows}
    root_w = float(bars["a"].get("width", "0"))
    x0 = float(bars["a"].get("x", "0"))
    assert abs((float(bars["b"].get("x", "0")) - x0) / root_w - 0.05) < 1e-3
    assert abs(float(bars["b"].get("width", "0")) / root_w - 0.40) < 1e-3


def test_waterfall_escapes_and_is_deterministic() -> None:
    svg = waterfall_svg(small_trace())
    no_script(svg)
    assert svg == waterfall_svg(small_trace())
    assert "critical" not in svg.split("</title>", 1)[1].replace("tt-", "")  # nothing highlighted


def test_waterfall_caps_spans() -> None:
    svg = waterfall_svg(small_trace(), max_spans=2)
    root = parse(svg)
    assert len([g for g in root.iter(f"{NS}g") if g.get("data-span-id")]) == 2
    assert "3 more spans not drawn" in "".join(root.itertext())


# -- service map --------------------------------------------------------------------------------

def small_graph() -> DependencyGraph:
    return DependencyGraph(DepsLevel.SERVICE, [
        Edge(EdgeKind.CALL, "frontend", "checkout", 100, 1, 10.0, 50.0),
        Edge(EdgeKind.CALL, "checkout", HOSTILE, 40, 20, 5.0, 900.0),
        Edge(EdgeKind.DATABASE, "checkout", "postgres", 300, 0, 1.0, 3.0),
        Edge(EdgeKind.CALL, HOSTILE, "frontend", 2, 0, 1.0, 1.0),  # closes a cycle
    ], Counter())


def test_service_map_error_edge_red_and_links() -> None:
    svg = service_map_svg(small_graph(), link=lambda s: f"/service/{s}")
    root = parse(svg)
    edges = {(g.get("data-caller"), g.get("data-callee")): g for g in root.iter(f"{NS}g")
             if g.get("data-caller") is not None}
    assert len(edges) == 4
    bad = edges[("checkout", HOSTILE)]
    assert "error" in (bad.get("class") or "").split()
    line = next(e for e in bad.iter(f"{NS}path"))
    assert line.get("stroke") == "#d62728"
    for key, g in edges.items():
        if key != ("checkout", HOSTILE):
            assert "error" not in (g.get("class") or "").split()
    assert "50%" in "".join(bad.itertext())
    # Services link to their page; the database peer does not.
    hrefs = sorted(a.get("href") or "" for a in root.iter(f"{NS}a"))
    assert hrefs == sorted(f"/service/{s}" for s in ["frontend", "checkout", HOSTILE])
    no_script(svg)


def test_service_map_layers_and_determinism() -> None:
    place = layout(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("a", "c"), ("c", "a"),
                                          ("d", "c")])
    # a is an entry (the back edge c→a is set aside); c is after b on the longest path.
    assert place["a"][0] == 0 and place["b"][0] == 1 and place["c"][0] == 2
    assert place["d"][0] == 0
    assert service_map_svg(small_graph()) == service_map_svg(small_graph())


def test_service_map_caps_nodes_and_empty() -> None:
    root = parse(service_map_svg(small_graph(), max_nodes=2))
    assert len([g for g in root.iter(f"{NS}g") if g.get("data-node")]) == 2
    assert "2 quieter nodes not shown" in "".join(root.itertext())
    empty = service_map_svg(DependencyGraph(DepsLevel.SERVICE, [], Counter()))
    assert "no calls" in "".join(parse(empty).itertext())


# -- small charts -------------------------------------------------------------------------------

def test_bar_chart_highlight_and_escape() -> None:
    svg = bar_chart_svg([(HOSTILE, 3.0), ("ok", 1.0)], label="errors",
                        highlight=lambda name, v: v > 2)
    root = parse(svg)
    bars = by_class(root, "rect", "bar")
    assert [b.get("fill") for b in bars] == ["#d62728", "#4e79a7"]
    assert float(bars[0].get("width", "0")) > float(bars[1].get("width", "0"))
    no_script(svg)


def test_volume_and_sparkline() -> None:
    edges = [T0 + i * 10**9 for i in range(4)]
    root = parse(volume_svg(edges, [10, 0, 4], [2, 0, 0]))
    cols = [c for c in by_class(root, "rect", "col") if "error" not in (c.get("class") or "")]
    assert [int(c.get("data-count", "0")) for c in cols] == [10, 4]
    errs = by_class(root, "rect", "error")
    assert [int(c.get("data-count", "0")) for c in errs] == [2]
    # Errors have their own scale (2 of 16 spans would be a sliver on the spans' scale).
    assert float(errs[0].get("height", "0")) > 0.3 * float(cols[0].get("height", "0"))
    spark = parse(sparkline_svg([1.0, 5.0, 3.0]))
    line = next(spark.iter(f"{NS}polyline"))
    assert len((line.get("points") or "").split()) == 3
