"""One trace as a waterfall: a row per span in tree order (children by start time), the bar at
the span's offset and width of its duration, coloured by service; errors red, critical-path
spans outlined.

Spans are placed by walking the tree from the trace's roots (orphans last, as `TraceDetail.roots`
orders them); a span met twice (a duplicate id, a parent cycle) is drawn once.
"""

from __future__ import annotations

from collections.abc import Callable, Set

from telltale.analyses.trace_detail import SpanDetail, TraceDetail
from telltale.render.svg.elements import (
    ERROR,
    GRID,
    MUTED,
    TEXT,
    clip_label,
    document,
    el,
    empty,
    esc,
    fmt_ms,
    service_colour,
    text,
    title,
)
from telltale.render.svg.elements import linked as wrap_link

LABEL_W = 320.0
ROW_H = 20.0
HEAD = 24.0
INDENT = 12.0
MAX_DEPTH_INDENT = 12  # deeper spans stop indenting, so the label keeps some room


def tree_order(trace: TraceDetail) -> list[tuple[SpanDetail, int]]:
    """(span, depth) in depth-first order, children by (start, span id); spans the walk does
    not reach (a cycle without a root) are appended at depth 0."""
    children = trace.children()
    for kids in children.values():
        kids.sort(key=lambda s: (s.start_ns, s.span_id))
    seen: set[int] = set()
    expanded: set[str] = set()
    out: list[tuple[SpanDetail, int]] = []
    stack = [(s, 0) for s in reversed(trace.roots)]
    while stack:
        span, depth = stack.pop()
        if id(span) in seen:
            continue
        seen.add(id(span))
        out.append((span, depth))
        # The same span id may belong to duplicates: expand children once per id.
        if span.span_id in expanded:
            continue
        expanded.add(span.span_id)
        stack.extend((c, depth + 1) for c in reversed(children.get(span.span_id, [])))
    out.extend((s, 0) for s in trace.spans if id(s) not in seen)
    return out


def waterfall_svg(trace: TraceDetail, critical: Set[str] = frozenset(), *,
                  link: Callable[[SpanDetail], str] | None = None, max_spans: int = 500,
                  width: float = 1000) -> str:
    """The trace's spans (at most `max_spans`), `critical` span ids highlighted; `link` gives
    an href per span (the dashboard's span view)."""
    if not trace.spans:
        return empty("no spans in this trace", cls="tt-waterfall")
    rows = tree_order(trace)
    dropped = max(0, len(rows) - max_spans)
    rows = rows[:max_spans]
    t0, total = trace.start_ns, max(1, trace.end_ns - trace.start_ns)
    bar_w = width - LABEL_W - 90
    scale = bar_w / total
    out: list[str] = []
    # Time ticks at fifths of the trace.
    for i in range(6):
        x = LABEL_W + bar_w * i / 5
        out.append(el("line", None, x1=x, y1=HEAD - 6, x2=x, y2=HEAD + ROW_H * len(rows),
                      stroke=GRID, cls="grid"))
        out.append(text(x, HEAD - 10, fmt_ms(total * i / 5 / 1e6), cls="axis", size=10,
                        fill=MUTED, anchor="middle"))
    for i, (span, depth) in enumerate(rows):
        y = HEAD + i * ROW_H
        out.append(_row(span, depth, y, t0, scale, bar_w, span.span_id in critical, link))
    y = HEAD + ROW_H * len(rows) + 16
    notes = []
    if dropped:
        notes.append(f"{dropped:,} more spans not drawn")
    if critical:
        notes.append("outlined: on the critical path")
    if any(s.error for s in trace.spans):
        notes.append("red: error")
    if notes:
        out.append(text(8, y, "; ".join(notes), cls="note", size=10, fill=MUTED))
        y += 8
    services = len({s.service for s in trace.spans})
    label = (f"Trace {trace.trace_id}: {len(trace.spans):,} spans, {services} services, "
             f"{fmt_ms(total / 1e6)}")
    return document(width, y + 6, out, cls="tt-waterfall", label=label)


def _row(span: SpanDetail, depth: int, y: float, t0: int, scale: float, bar_w: float,
         on_path: bool, link_fn: Callable[[SpanDetail], str] | None) -> str:
    ms = span.duration_ns / 1e6
    indent = 6 + INDENT * min(depth, MAX_DEPTH_INDENT)
    chars = int((LABEL_W - indent - 8) / 6.2)
    name = f"{span.service}: {span.name}"
    x = LABEL_W + (span.start_ns - t0) * scale
    w = max(1.5, span.duration_ns * scale)
    status = f"error{': ' + span.status_message if span.status_message else ''}" if span.error \
        else span.status_code
    tip = (f"{span.service}: {span.name}\n{fmt_ms(ms)} at +{fmt_ms((span.start_ns - t0) / 1e6)}"
           f"\nkind {span.kind}, status {status}\nspan {span.span_id}"
           + ("\non the critical path" if on_path else ""))
    cls = "span" + (" error" if span.error else "") + (" critical" if on_path else "")
    parts = [
        title(tip),
        el("rect", None, x=0.0, y=y, width=LABEL_W + bar_w + 90, height=ROW_H, fill="transparent",
           cls="row-bg"),
        el("circle", None, cx=indent - 2, cy=y + ROW_H / 2, r=3.0, fill=service_colour(span.service),
           cls="service-dot"),
        el("text", esc(clip_label(name, chars)), x=indent + 4, y=y + ROW_H - 6, cls="span-label",
           font_size=11.0, fill=ERROR if span.error else TEXT),
        el("rect", None, x=x, y=y + 4, width=w, height=ROW_H - 8, rx=2.0,
           fill=ERROR if span.error else service_colour(span.service),
           stroke="#111827" if on_path else None, stroke_width=2.0 if on_path else None,
           cls="bar" + (" error" if span.error else "") + (" critical" if on_path else "")),
    ]
    after = x + w + 4
    if after + 60 > LABEL_W + bar_w + 90:  # no room to the right: write it inside/left
        parts.append(text(x - 4, y + ROW_H - 6, fmt_ms(ms), cls="duration", size=10, fill=MUTED,
                          anchor="end"))
    else:
        parts.append(text(after, y + ROW_H - 6, fmt_ms(ms), cls="duration", size=10, fill=MUTED))
    href = link_fn(span) if link_fn is not None else None
    return wrap_link(href, el("g", "".join(parts), cls=cls, data_span_id=span.span_id))
