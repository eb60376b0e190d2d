"""The pieces every SVG chart is drawn from: escaping, element builders, colours, number format.

Charts are strings of SVG built here on the server, so the HTML report and the dashboard need no
JavaScript. Styling is by presentation attributes (fill=, stroke=, font-size=) plus a class on
every element: the attributes make a chart look right on its own, and any page's CSS can
override them through the classes (CSS wins over presentation attributes). Every piece of text
and every attribute value goes through `esc` / `attr`, since names come from telemetry.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
TEXT = "#1f2933"
MUTED = "#6b7785"
GRID = "#d9dee4"
ERROR = "#d62728"
# Tableau-10 minus its red, which means "error" here.
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
           "#ff9da7", "#bab0ac", "#86bcb6", "#8cd17d", "#a0cbe8"]


def esc(text: object) -> str:
    """Text content, escaped (quotes too, so it is also safe where a quote would matter)."""
    return escape(str(text), {'"': "&quot;", "'": "&#x27;"})


def attrs(**values: object) -> str:
    """` key="value"` pairs, escaped; None and False values left out; `cls` → class and
    underscores → dashes (stroke_width → stroke-width)."""
    out = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        name = "class" if key == "cls" else key.rstrip("_").replace("_", "-")
        out.append(f" {name}={quoteattr(_num(value) if isinstance(value, float) else str(value))}")
    return "".join(out)


def _num(v: float) -> str:
    """Coordinates with at most two decimals, no trailing zeros: stable text, small files."""
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def el(tag: str, body: str | None = None, **values: object) -> str:
    """One element; `body` is raw (already escaped) markup, None for a self-closing element."""
    if body is None:
        return f"<{tag}{attrs(**values)}/>"
    return f"<{tag}{attrs(**values)}>{body}</{tag}>"


def title(text: str) -> str:
    """A tooltip: the first child `<title>` of an element is what browsers show on hover."""
    return f"<title>{esc(text)}</title>"


def text(x: float, y: float, content: str, *, cls: str = "label", size: float = 11,
         fill: str = TEXT, anchor: str = "start", weight: str | None = None) -> str:
    return el("text", esc(content), x=float(x), y=float(y), cls=cls, font_size=float(size),
              fill=fill, text_anchor=anchor, font_weight=weight)


def linked(href: str | None, body: str) -> str:
    """`body` inside `<a href>` when there is a link (the dashboard), else unchanged."""
    return body if href is None else el("a", body, href=href, cls="link")


def document(width: float, height: float, body: Iterable[str], *, cls: str, label: str) -> str:
    """The `<svg>` root: sized by its viewBox so it scales to its container, with an
    accessible name."""
    w, h = max(1.0, float(width)), max(1.0, float(height))
    head = (f'<svg xmlns="http://www.w3.org/2000/svg"{attrs(cls=f"tt-svg {cls}")}'
            f'{attrs(viewBox=f"0 0 {_num(w)} {_num(h)}", width=w, height=h, role="img")}'
            f'{attrs(style="max-width:100%;height:auto")}'
            f'{attrs(aria_label=label, font_family=FONT, preserveAspectRatio="xMinYMin meet")}>')
    return head + title(label) + "".join(body) + "</svg>"


def empty(message: str, *, cls: str, width: float = 480, height: float = 40) -> str:
    """A chart with nothing to draw still says so, in the same frame."""
    return document(width, height, [text(8, height / 2 + 4, message, cls="empty", fill=MUTED)],
                    cls=f"{cls} tt-empty", label=message)


def service_colour(name: str) -> str:
    """A stable colour per service name (crc32: the same in every process, unlike hash())."""
    return PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)]


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "–"
    if ms == 0:
        return "0"
    if ms >= 1000:
        return f"{ms / 1000:,.2f} s"
    if ms >= 100:
        return f"{ms:,.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def fmt_count(n: float) -> str:
    """1234 → 1.2k, 2_500_000 → 2.5M: axis and chart labels, where room is short."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{n:g}" if isinstance(n, float) else str(n)


def fmt_pct(fraction: float) -> str:
    pct = 100.0 * fraction
    return f"{pct:.0f}%" if pct >= 10 or pct == 0 else f"{pct:.1f}%"


def clip_label(label: str, chars: int) -> str:
    """Long names shortened with an ellipsis; the full name stays in the tooltip."""
    return label if len(label) <= chars else label[: max(1, chars - 1)] + "…"
