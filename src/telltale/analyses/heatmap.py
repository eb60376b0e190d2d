"""Latency heatmap: per operation (or service), span counts by time bucket × latency bucket, and
which handlers are hot when (the busiest and the slowest operation × time bucket cells).

The result carries the matrices and both sets of bucket edges, so the terminal grid, the
long-format JSON/CSV and the dashboard all draw from the same numbers. Latency buckets are powers
of two from 1 ms (trimmed to the range the data occupies); time buckets are a round width giving
about 60 columns over the window, unless the caller picks the width.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, heatmap_sql

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
TARGET_COLUMNS = 60
MAX_COLUMNS = 10_000  # a matrix per group: keep an explicit narrow bucket from exhausting memory
_NICE_WIDTHS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600,
                  6 * 3600, 12 * 3600, 86400, 7 * 86400]


class HeatmapBy(StrEnum):
    SERVICE = "service"
    OPERATION = "operation"


@dataclass(frozen=True)
class HeatRow:
    service: str
    operation: str | None  # None when grouped by service
    counts: npt.NDArray[np.int64]  # [time bucket, latency bucket]

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def label(self) -> str:
        return self.service if self.operation is None else f"{self.service}: {self.operation}"


@dataclass(frozen=True)
class HotCell:
    """One operation in one time bucket: how many spans started there and (for the slowest
    list) their p95."""

    service: str
    operation: str | None
    time_start: int
    count: int
    p95_ms: float | None = None
    ratio: float | None = None  # p95 / the group's usual p95 (median over its time buckets)


@dataclass
class Heatmap:
    by: HeatmapBy
    width_ns: int
    time_edges: list[int]  # ns; bucket t is [time_edges[t], time_edges[t + 1])
    latency_edges_ms: list[float]  # bucket b is [edges[b], edges[b + 1]) ms
    groups: list[HeatRow]  # by name
    busiest: list[HotCell] = field(default_factory=list)
    slowest: list[HotCell] = field(default_factory=list)  # filled by `with_slowest`
    min_count: int = 0  # spans a cell needs to enter the slowest list

    def to_rows(self) -> Rows:
        """Long format, non-empty cells only: one row per (group, time bucket, latency bucket)."""
        columns = ["service", "operation", "time_start", "latency_lo_ms", "latency_hi_ms", "count"]
        out = []
        for g in self.groups:
            for t, b in zip(*np.nonzero(g.counts), strict=True):
                out.append({"service": g.service, "operation": g.operation,
                            "time_start": iso(self.time_edges[t]),
                            "latency_lo_ms": self.latency_edges_ms[b],
                            "latency_hi_ms": self.latency_edges_ms[b + 1],
                            "count": int(g.counts[t, b])})
        return Rows(f"Latency heatmap by {self.by.value}", columns, out,
                    [] if self.groups else ["no spans in scope"],
                    extra={"bucket_ns": self.width_ns, "time_edges_ns": self.time_edges,
                           "latency_edges_ms": self.latency_edges_ms})

    def hot_rows(self) -> list[Rows]:
        """The busiest and the slowest (group, time bucket) cells as two tables."""
        def rows(cells: list[HotCell]) -> list[dict[str, Any]]:
            return [{"service": c.service, "operation": c.operation,
                     "time_start": iso(c.time_start), "count": c.count, "p95_ms": c.p95_ms,
                     "x_usual_p95": c.ratio} for c in cells]
        base = ["service"] + (["operation"] if self.by is HeatmapBy.OPERATION else [])
        return [
            Rows("Busiest moments (spans per time bucket)", [*base, "time_start", "count"],
                 rows(self.busiest)),
            Rows("Slowest moments (p95 per time bucket)",
                 [*base, "time_start", "count", "p95_ms", "x_usual_p95"], rows(self.slowest),
                 [f"time buckets with fewer than {self.min_count} spans are left out; "
                  "x_usual_p95 compares with the median p95 of the same "
                  f"{self.by.value} over the window"]),
        ]


def iso(ns: int) -> str:
    """UTC ISO-8601, with milliseconds only when the time has them (sub-second buckets)."""
    text = datetime.fromtimestamp(ns // NS_PER_S, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    millis = ns % NS_PER_S // NS_PER_MS
    return f"{text}.{millis:03d}Z" if ns % NS_PER_S else f"{text}Z"


def pick_width(since: int, until: int, target: int = TARGET_COLUMNS) -> int:
    """The smallest round bucket width giving at most `target` columns."""
    span_s = max(1, until - since) / NS_PER_S
    for width in _NICE_WIDTHS_S:
        if span_s / width <= target:
            return width * NS_PER_S
    return _NICE_WIDTHS_S[-1] * NS_PER_S


def latency_edges(lo_bucket: int, hi_bucket: int) -> list[float]:
    """Edges (ms) of latency buckets lo..hi: bucket 0 is [0, 1), bucket b is [2^(b-1), 2^b)."""
    return [0.0 if lo_bucket == 0 else 2.0 ** (lo_bucket - 1)] + [
        2.0 ** b for b in range(lo_bucket, hi_bucket + 1)]


def heatmap(store: Store, scope: Scope, *, by: HeatmapBy | str = HeatmapBy.OPERATION,
            width_ns: int | None = None, top: int = 10) -> Heatmap:
    """Counts per group × time bucket × latency bucket over the scope's window (or the data's),
    with the `top` busiest (group, time bucket) cells."""
    by = HeatmapBy(by)
    if width_ns is not None and width_ns <= 0:
        raise ValueError("the time bucket must be positive")
    lo, hi = heatmap_sql.time_range(store.con, scope)
    since = scope.since if scope.since is not None else lo
    until = scope.until if scope.until is not None else (None if hi is None else hi + 1)
    if since is None or until is None or lo is None:
        return Heatmap(by, width_ns or NS_PER_S, [], [], [])
    width = width_ns or pick_width(since, until)
    t0 = since // width * width
    columns = -(-(until - t0) // width)
    if columns > MAX_COLUMNS:
        raise ValueError(f"a {width / NS_PER_S:g} s bucket makes {columns:,} columns over this "
                         f"window (at most {MAX_COLUMNS:,}): choose a wider bucket")
    cols = heatmap_sql.cells(store.con, scope, by.value, t0, width)
    g, t, b, n = (np.asarray(cols[k], dtype=np.int64) for k in ("g", "t", "b", "n"))
    b_lo, b_hi = int(b.min()), int(b.max())
    counts = np.zeros((int(g.max()) + 1, columns, b_hi - b_lo + 1), dtype=np.int64)
    np.add.at(counts, (g, t, b - b_lo), n)
    _, first = np.unique(g, return_index=True)
    services, operations = cols["service"], cols["operation"]
    groups = [HeatRow(str(services[i]), _text(operations[i]), counts[k])
              for k, i in enumerate(first)]
    edges = [t0 + i * width for i in range(columns + 1)]
    return Heatmap(by, width, edges, latency_edges(b_lo, b_hi), groups,
                   _busiest(groups, edges, top))


def with_slowest(store: Store, scope: Scope, heat: Heatmap, *, rank: str = "p95",
                 min_count: int = 20, top: int = 10) -> Heatmap:
    """`heat` with its `top` slowest (group, time bucket) cells by p95 — or by p95 relative to
    the group's usual p95 (`rank="ratio"`: when was each handler slow for itself) — among cells
    of at least `min_count` spans, so a lone slow span does not outrank a real slowdown. A
    second pass over the spans (percentiles need them), hence separate."""
    if not heat.time_edges:
        return replace(heat, min_count=min_count)
    t0, width = heat.time_edges[0], heat.width_ns
    rows = heatmap_sql.slow_cells(store.con, scope, heat.by.value, t0, width, min_count, top,
                                  rank)
    cells = [HotCell(str(s), None if o is None else str(o), t0 + int(t) * width, int(n),
                     float(p95) / NS_PER_MS, None if ratio is None else float(ratio))
             for s, o, t, n, p95, ratio in rows]
    return replace(heat, slowest=cells, min_count=min_count)


def _text(value: Any) -> str | None:
    if value is None or value is np.ma.masked:
        return None
    return str(value)


def _busiest(groups: list[HeatRow], edges: list[int], top: int) -> list[HotCell]:
    if not groups:
        return []
    per_cell = np.stack([g.counts.sum(axis=1) for g in groups])  # [group, time]
    flat = per_cell.ravel()
    # Largest first; ties by group then time (a stable sort of the negated counts).
    order = np.argsort(-flat, kind="stable")[:top]
    cells = []
    for i in order:
        if flat[i] == 0:
            break
        k, t = divmod(int(i), per_cell.shape[1])
        cells.append(HotCell(groups[k].service, groups[k].operation, edges[t], int(flat[i])))
    return cells
