"""The report as one self-contained HTML file: Jinja2 (autoescaped) templates, inline CSS, charts
as inline SVG. No script, no font, no image or stylesheet from anywhere else, so it opens
offline and can be mailed around.

Numbers are formatted here, once, as filters the templates share; SVG charts come from
render/svg (built with every name escaped) and are the only markup passed through unescaped.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from telltale.render.rows import Rows
from telltale.render.svg import bar_chart_svg, heatmap_svg, service_map_svg, volume_svg, waterfall_svg
from telltale.render.svg.elements import fmt_ms
from telltale.report.collect import ReportData, collect
from telltale.store import Store

TEMPLATES = Path(__file__).parent / "templates"
MAX_TABLE_ROWS = 15


def iso_time(ns: int | None) -> str:
    if ns is None:
        return "–"
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def count(n: int | float | None) -> str:
    return "–" if n is None else f"{n:,.0f}"


def pct(fraction: float | None, digits: int = 1) -> str:
    return "–" if fraction is None else f"{100.0 * fraction:.{digits}f}%"


def cell(value: Any, column: str) -> str:
    """A value of a generic analysis table, formatted by what its column holds."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and column.endswith("_ms"):
        return fmt_ms(float(value))
    if isinstance(value, int | float) and column.endswith("_pct"):
        return f"{float(value):.1f}%"
    if isinstance(value, int | float) and (column.endswith("_rate") or column == "flake_rate"):
        return pct(float(value))
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def header(column: str) -> str:
    """A column name for people: the unit moves into the cells (`p95_ms` → `p95`)."""
    for suffix, unit in (("_ms", ""), ("_pct", " %"), ("_s", " (s)")):
        if column.endswith(suffix) and column != "per_s":
            column = column[: -len(suffix)] + unit
    return column.replace("_", " ")


def numeric(rows: Rows, column: str) -> bool:
    """Right-align a column whose values are numbers."""
    return any(isinstance(r.get(column), int | float) and not isinstance(r.get(column), bool)
               for r in rows.rows)


def score_class(score: float | None) -> str:
    if score is None:
        return "none"
    return "good" if score >= 0.99 else "fair" if score >= 0.9 else "poor"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters.update(iso_time=iso_time, count=count, pct=pct, ms=fmt_ms, cell=cell,
                       numeric=numeric, header=header, score_class=score_class)
    return env


def charts(data: ReportData) -> dict[str, Markup]:
    """The SVG charts, as markup (their text is escaped by render/svg)."""
    out: dict[str, Markup] = {}
    if data.volume is not None:
        out["volume"] = Markup(volume_svg(data.volume.time_edges, data.volume.spans,
                                          data.volume.errors))
    if data.heat is not None:
        out["heatmap"] = Markup(heatmap_svg(data.heat, max_rows=30))
    if data.graph is not None:
        out["service_map"] = Markup(service_map_svg(data.graph))
    if data.services is not None and data.services.rows:
        rows = sorted(data.services.rows, key=lambda r: (-r.error_rate, r.service))
        out["errors"] = Markup(bar_chart_svg(
            [(r.service, r.error_rate) for r in rows], label="error rate by service",
            value_text=lambda v: f"{100 * v:.1f}%", highlight=lambda _n, v: v >= 0.05))
    for i, slow in enumerate(data.slow):
        out[f"trace{i}"] = Markup(waterfall_svg(slow.detail, slow.critical, max_spans=150))
    return out


def render_html(data: ReportData) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(data=data, charts=charts(data), max_rows=MAX_TABLE_ROWS,
                           title="telltale report")


def write_report(store: Store, path: str | os.PathLike[str], *, since: int | None = None,
                 until: int | None = None, now_ns: int | None = None) -> ReportData:
    """Collect and write the report of [since, until) (None: open) to `path`; `now_ns` is the
    generation time shown (default: the store's clock). Returns what was reported."""
    data = collect(store, since=since, until=until, now_ns=now_ns)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}-{time.monotonic_ns()}")
    tmp.write_text(render_html(data), encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a report
    return data
