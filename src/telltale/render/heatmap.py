"""A heatmap as terminal block grids: latency rows (slowest on top) × time columns."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.text import Text

from telltale.analyses.heatmap import Heatmap, iso

# Light to hot: one colour per count level of a heatmap cell (log scale within each grid).
_PALETTE = ["grey37", "blue", "cyan", "green", "yellow", "dark_orange", "red", "bright_red"]


def print_grids(heat: Heatmap, console: Console, top: int) -> None:
    """One block grid per group, busiest first: latency rows (slowest on top) × time columns,
    each cell coloured by its count on a log scale within the grid."""
    if not heat.groups:
        console.print("[yellow]no spans in scope[/yellow]")
        return
    groups = sorted(heat.groups, key=lambda g: (-g.total, g.label))[:top]
    edges = heat.latency_edges_ms
    labels = [_ms_label(edges[b + 1]) for b in range(len(edges) - 1)]
    pad = max(len(s) for s in labels)
    columns = len(heat.time_edges) - 1
    for g in groups:
        console.print(Text(f"{g.label}  ({g.total:,} spans)", style="bold"))
        peak = float(np.log1p(g.counts.max()))
        rows = [b for b in range(g.counts.shape[1]) if g.counts[:, b].any()]
        for b in reversed(range(min(rows), max(rows) + 1)):
            line = Text(f"<{labels[b]:>{pad}} ", style="dim")
            for t in range(columns):
                n = int(g.counts[t, b])
                if n == 0:
                    line.append("·", style="grey23")
                    continue
                level = int(np.log1p(n) / peak * (len(_PALETTE) - 1)) if peak else 0
                line.append("█", style=_PALETTE[level])
            console.print(line)
        start, end = iso(heat.time_edges[0]), iso(heat.time_edges[-1])
        console.print(Text(f"{'':>{pad + 2}}{start} … {end}  ({columns} × "
                           f"{_ms_label(heat.width_ns / 1e6)})", style="dim"))
    if len(heat.groups) > top:
        console.print(f"[dim]… {len(heat.groups) - top:,} more (use --top, --operation, "
                      "or --format json/csv)[/dim]")


def _ms_label(ms: float) -> str:
    return f"{ms / 1000:g}s" if ms >= 1000 else f"{ms:g}ms"
