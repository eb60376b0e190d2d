"""Small charts for overviews: horizontal bars, a sparkline, and spans / errors over time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from telltale.render.svg.elements import (
    ERROR,
    GRID,
    MUTED,
    PALETTE,
    TEXT,
    clip_label,
    document,
    el,
    empty,
    esc,
    fmt_count,
    text,
    title,
)


def bar_chart_svg(items: Sequence[tuple[str, float]], *, label: str,
                  value_text: Callable[[float], str] = fmt_count, colour: str = PALETTE[0],
                  highlight: Callable[[str, float], bool] | None = None, max_bars: int = 20,
                  width: float = 560) -> str:
    """One horizontal bar per (name, value), in the given order; bars for which `highlight`
    is true are red (e.g. an error rate over a threshold)."""
    items = list(items)[:max_bars]
    if not items:
        return empty("nothing to chart", cls="tt-bars")
    name_w, row_h = 180.0, 20.0
    bar_w = width - name_w - 70
    peak = max((v for _, v in items), default=0.0) or 1.0
    out: list[str] = []
    for i, (name, value) in enumerate(items):
        y = 6 + i * row_h
        hot = highlight is not None and highlight(name, value)
        w = max(0.0, value) / peak * bar_w
        out.append(el("g", title(f"{name}: {value_text(value)}")
                      + el("text", esc(clip_label(name, 28)), x=name_w - 6, y=y + 13,
                           font_size=11.0, fill=TEXT, text_anchor="end", cls="bar-name")
                      + el("rect", None, x=name_w, y=y + 3, width=max(w, 1.0), height=row_h - 6,
                           rx=2.0, fill=ERROR if hot else colour, cls="bar" + (" hot" if hot else ""),
                           data_value=value)
                      + text(name_w + w + 4, y + 13, value_text(value), cls="bar-value", size=10,
                             fill=MUTED),
                      cls="bar-row"))
    return document(width, 12 + len(items) * row_h, out, cls="tt-bars", label=label)


def sparkline_svg(values: Sequence[float], *, width: float = 160, height: float = 32,
                  colour: str = PALETTE[0], label: str = "trend") -> str:
    """A line over `values` scaled to its own min..max; the last point is marked."""
    if not values:
        return empty("no data", cls="tt-sparkline", width=width, height=height)
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = (width - 4) / max(1, len(values) - 1)
    points = [(2 + i * step, height - 2 - (v - lo) / span * (height - 4)) for i, v in enumerate(values)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    lx, ly = points[-1]
    body = [el("polyline", None, points=line, fill="none", stroke=colour, stroke_width=1.5,
               cls="spark-line"),
            el("circle", None, cx=lx, cy=ly, r=2.0, fill=colour, cls="spark-last")]
    return document(width, height, body, cls="tt-sparkline",
                    label=f"{label}: {fmt_count(lo)} to {fmt_count(hi)}")


def volume_svg(time_edges: Sequence[int], spans: Sequence[int], errors: Sequence[int], *,
               width: float = 960, height: float = 190) -> str:
    """Spans per time bucket as columns, and below them error spans on their own scale (a
    0.3 % error rate would be invisible on the spans' scale); tooltips give both."""
    if not spans or len(time_edges) != len(spans) + 1:
        return empty("no spans in this window", cls="tt-volume")
    left, axis_h, gap = 56.0, 18.0, 10.0
    top_h = (height - axis_h - gap - 14) * 0.65
    err_h = height - axis_h - gap - 14 - top_h
    plot_w = width - left - 8
    col_w = plot_w / len(spans)
    out: list[str] = []
    panels = ((10.0, top_h, spans, PALETTE[0], "spans"), (10.0 + top_h + gap, err_h, errors, ERROR,
                                                          "errors"))
    for top, h, values, colour, name in panels:
        peak = max(max(values), 1)
        for frac in (0.0, 0.5, 1.0) if h > 60 else (0.0, 1.0):
            y = top + h * (1 - frac)
            out.append(el("line", None, x1=left, y1=y, x2=left + plot_w, y2=y, stroke=GRID,
                          cls="grid"))
            out.append(text(left - 4, y + 3, fmt_count(round(peak * frac)), cls="axis", size=9,
                            fill=MUTED, anchor="end"))
        # Sideways in the margin, clear of the axis numbers.
        out.append(el("text", esc(name), x=10.0, y=top + h / 2, font_size=10.0, fill=colour,
                      text_anchor="middle", transform=f"rotate(-90 10 {top + h / 2:.1f})",
                      cls="panel-label"))
        for i, n in enumerate(values):
            if n == 0:
                continue
            x = left + i * col_w
            bar = n / peak * h
            when = datetime.fromtimestamp(time_edges[i] / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
            out.append(el("rect", title(f"{when} UTC: {spans[i]:,} spans, {errors[i]:,} errors"),
                          x=x, y=top + h - bar, width=max(col_w - 1, 0.5), height=max(bar, 1.0),
                          fill=colour, cls="col" + (" error" if name == "errors" else ""),
                          data_count=n))
    span_ns = time_edges[-1] - time_edges[0]
    fmt = "%m-%d %H:%M" if span_ns > 2 * 86400 * 10**9 else "%H:%M"
    step = max(1, int(110 // col_w))
    for i in range(0, len(spans) + 1, step):
        out.append(text(left + i * col_w, height - 6,
                        datetime.fromtimestamp(time_edges[i] / 1e9, UTC).strftime(fmt),
                        cls="axis", size=9, fill=MUTED, anchor="middle"))
    label = f"Spans over time: {sum(spans):,} spans, {sum(errors):,} errors"
    return document(width, height, out, cls="tt-volume", label=label)
