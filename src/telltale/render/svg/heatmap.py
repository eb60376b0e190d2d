"""The latency heatmap as SVG: one row per group (operation or service), one column per time
bucket, each cell coloured by the latency band its p95 falls in (or by its span count).

The analysis holds a full latency histogram per cell; a flat grid can show one number per
cell, so the p95's band is drawn and the whole histogram goes into the cell's tooltip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from telltale.analyses.heatmap import Heatmap, HeatRow, iso
from telltale.render.svg.elements import (
    GRID,
    MUTED,
    TEXT,
    clip_label,
    document,
    el,
    empty,
    esc,
    fmt_count,
    fmt_ms,
    text,
    title,
)

# Cool to hot, for latency bands (fast → slow) and for counts (few → many).
_STOPS = [(0x2c, 0x7b, 0xb6), (0xab, 0xd9, 0xe9), (0xff, 0xff, 0xbf), (0xfd, 0xae, 0x61),
          (0xd7, 0x19, 0x1c)]
LABEL_W = 240.0
CELL_H = 16.0
TOP = 8.0


class HeatMetric(StrEnum):
    P95 = "p95"
    COUNT = "count"


def ramp(i: int, n: int) -> str:
    """The i-th of n colours along the cool-to-hot scale."""
    pos = 0.0 if n <= 1 else i / (n - 1) * (len(_STOPS) - 1)
    k = min(int(pos), len(_STOPS) - 2)
    f = pos - k
    a, b = _STOPS[k], _STOPS[k + 1]
    return "#" + "".join(f"{round(a[c] + (b[c] - a[c]) * f):02x}" for c in range(3))


def p95_band(hist: npt.NDArray[np.int64]) -> int:
    """The latency bucket holding the 95th percentile of one cell's histogram."""
    cum = np.cumsum(hist)
    return int(np.searchsorted(cum, 0.95 * cum[-1]))


def _time_label(ns: int, span_ns: int) -> str:
    moment = datetime.fromtimestamp(ns / 1e9, UTC)
    if span_ns > 2 * 86400 * 10**9:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%H:%M:%S" if span_ns < 600 * 10**9 else "%H:%M")


def _histogram_text(hist: npt.NDArray[np.int64], edges: list[float]) -> str:
    parts = [f"{fmt_ms(edges[b])}–{fmt_ms(edges[b + 1])}: {int(n):,}"
             for b, n in enumerate(hist) if n]
    return "; ".join(parts)


def heatmap_svg(heat: Heatmap, *, metric: HeatMetric | str = HeatMetric.P95, max_rows: int = 40,
                width: float = 960) -> str:
    """Groups (busiest `max_rows`, then by name) × time buckets. Each cell carries
    `data-count` (its spans) and a tooltip with its time, count, p95 band and histogram."""
    metric = HeatMetric(metric)
    if not heat.groups or len(heat.time_edges) < 2:
        return empty("no spans in this window", cls="tt-heatmap")
    shown = sorted(sorted(heat.groups, key=lambda g: (-g.total, g.label))[:max_rows],
                   key=lambda g: g.label)
    columns = len(heat.time_edges) - 1
    cell_w = max(4.0, min(18.0, (width - LABEL_W - 16) / columns))
    grid_w = cell_w * columns
    edges = heat.latency_edges_ms
    bands = len(edges) - 1
    peak = max(int(g.counts.sum(axis=1).max()) for g in shown)
    levels = 8
    out: list[str] = []
    y = TOP
    for g in shown:
        out.append(_row(g, heat, y, cell_w, metric, peak, levels))
        y += CELL_H
    grid_bottom = y
    out.append(el("rect", None, x=LABEL_W, y=TOP, width=grid_w, height=grid_bottom - TOP,
                  fill="none", stroke=GRID, cls="frame"))
    # Time axis: about one label per 120 px.
    span_ns = heat.time_edges[-1] - heat.time_edges[0]
    step = max(1, int(120 // cell_w))
    for t in range(0, columns + 1, step):
        x = LABEL_W + t * cell_w
        out.append(el("line", None, x1=x, y1=grid_bottom, x2=x, y2=grid_bottom + 4, stroke=MUTED,
                      cls="tick"))
        out.append(text(x, grid_bottom + 16, _time_label(heat.time_edges[t], span_ns),
                        cls="axis", size=10, fill=MUTED, anchor="middle"))
    y = grid_bottom + 34
    what = f"{fmt_ms(heat.width_ns / 1e6)} buckets, UTC"
    out.append(text(LABEL_W, y, f"time ({what})", cls="axis-title", size=10, fill=MUTED))
    y += 14
    out.append(_legend(y, metric, edges, bands, peak, levels))
    y += 34
    if len(heat.groups) > len(shown):
        out.append(text(8, y, f"{len(heat.groups) - len(shown):,} quieter groups not shown",
                        cls="note", size=10, fill=MUTED))
        y += 14
    colour = "p95 latency band" if metric is HeatMetric.P95 else "span count"
    label = (f"Latency heatmap by {heat.by.value}: {len(shown)} of {len(heat.groups)} groups, "
             f"{columns} time buckets, colour = {colour}")
    return document(max(width, LABEL_W + grid_w + 16), y + 4, out, cls="tt-heatmap", label=label)


def _row(g: HeatRow, heat: Heatmap, y: float, cell_w: float, metric: HeatMetric, peak: int,
         levels: int) -> str:
    edges = heat.latency_edges_ms
    bands = len(edges) - 1
    parts = [el("text", title(f"{g.label}: {g.total:,} spans") + esc(clip_label(g.label, 38)), x=LABEL_W - 6,
                y=y + CELL_H - 4, cls="row-label", font_size=11.0, fill=TEXT,
                text_anchor="end")]
    per_time = g.counts.sum(axis=1)
    for t in np.nonzero(per_time)[0]:
        hist = g.counts[t]
        n = int(per_time[t])
        band = p95_band(hist)
        if metric is HeatMetric.P95:
            fill = ramp(band, bands)
        else:
            level = int(np.log1p(n) / np.log1p(peak) * (levels - 1)) if peak > 1 else 0
            fill = ramp(level, levels)
        tip = (f"{g.label}\n{iso(heat.time_edges[t])}: {n:,} spans, p95 ≤ {fmt_ms(edges[band + 1])}"
               f"\n{_histogram_text(hist, edges)}")
        parts.append(el("rect", title(tip), x=LABEL_W + int(t) * cell_w, y=y + 1,
                        width=max(1.0, cell_w - 1), height=CELL_H - 2, fill=fill, cls="cell",
                        data_count=n, data_band=band))
    return el("g", "".join(parts), cls="row")


def _legend(y: float, metric: HeatMetric, edges: list[float], bands: int, peak: int,
            levels: int) -> str:
    parts = []
    x = LABEL_W
    if metric is HeatMetric.P95:
        parts.append(text(8, y + 11, "p95 of the cell ≤", cls="legend-title", size=10,
                          fill=MUTED))
        for b in range(bands):
            parts.append(el("rect", title(f"p95 in {fmt_ms(edges[b])}–{fmt_ms(edges[b + 1])}"),
                            x=x, y=y, width=44.0, height=12.0, fill=ramp(b, bands),
                            cls="legend-swatch"))
            parts.append(text(x + 22, y + 24, fmt_ms(edges[b + 1]), cls="legend-label", size=9,
                              fill=MUTED, anchor="middle"))
            x += 46
    else:
        parts.append(text(8, y + 11, "spans per cell", cls="legend-title", size=10, fill=MUTED))
        for level in range(levels):
            lo = int(np.expm1(level / (levels - 1) * np.log1p(peak))) if peak > 1 else peak
            parts.append(el("rect", None, x=x, y=y, width=44.0, height=12.0,
                            fill=ramp(level, levels), cls="legend-swatch"))
            parts.append(text(x + 22, y + 24, f"≥{fmt_count(max(1, lo))}", cls="legend-label",
                              size=9, fill=MUTED, anchor="middle"))
            x += 46
    return el("g", "".join(parts), cls="legend")
