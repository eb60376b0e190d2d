"""The dependency graph as a service map: services and the peers they call (databases, brokers,
external APIs) in layers from left to right, callers before callees.

Layout, deterministic so the same graph always draws the same picture: edges closing a cycle
are set aside (a greedy feedback-arc-set order, names breaking ties), each node's layer
is its longest path from an entry, and a few barycentre sweeps order each layer to uncross the
edges. Operation-level graphs are drawn per service pair (calls and errors summed, the worst
p95 kept).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from telltale.analyses.deps import DependencyGraph, EdgeKind
from telltale.render.svg.elements import (
    ERROR,
    MUTED,
    TEXT,
    clip_label,
    document,
    el,
    empty,
    esc,
    fmt_count,
    fmt_ms,
    fmt_pct,
    linked,
    service_colour,
    text,
    title,
)

NODE_W, NODE_H = 170.0, 40.0
COL_GAP, ROW_GAP = 190.0, 40.0
MARGIN = 16.0
EDGE_GREY = "#8a94a3"


@dataclass
class PairEdge:
    caller: str
    callee: str
    kind: EdgeKind
    calls: int = 0
    errors: int = 0
    p95_ms: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


def pair_edges(graph: DependencyGraph) -> list[PairEdge]:
    """One edge per (caller, callee) service pair, sorted."""
    pairs: dict[tuple[str, str], PairEdge] = {}
    for e in graph.edges:
        p = pairs.setdefault((e.caller, e.callee), PairEdge(e.caller, e.callee, e.kind))
        p.calls += e.calls
        p.errors += e.errors
        p.p95_ms = max(p.p95_ms, e.p95_ms)
    return [pairs[k] for k in sorted(pairs)]


def layout(nodes: list[str], edges: list[tuple[str, str]], sweeps: int = 4
           ) -> dict[str, tuple[int, int]]:
    """(layer, position in layer) per node."""
    out_of: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        out_of[a].append(b)
    # Order the nodes so that few edges point backwards (Eades, Lin & Smyth's greedy
    # heuristic: sinks to the end, sources to the front, else the node with the most more
    # out- than in-edges); the edges that still point backwards close cycles and are set aside.
    succ_all = {n: set(out_of[n]) - {n} for n in nodes}
    pred_all: dict[str, set[str]] = {n: set() for n in nodes}
    for a, kids in succ_all.items():
        for b in kids:
            pred_all[b].add(a)
    left = set(nodes)
    front: list[str] = []
    back: list[str] = []

    def drop(n: str) -> None:
        left.discard(n)
        for m in succ_all[n]:
            pred_all[m].discard(n)
        for m in pred_all[n]:
            succ_all[m].discard(n)
    while left:
        sinks = sorted(n for n in left if not succ_all[n])
        sources = sorted(n for n in left if not pred_all[n])
        if sinks:
            back.insert(0, sinks[0])
            drop(sinks[0])
        elif sources:
            front.append(sources[0])
            drop(sources[0])
        else:
            best = min(left, key=lambda n: (-(len(succ_all[n]) - len(pred_all[n])), n))
            front.append(best)
            drop(best)
    rank = {n: i for i, n in enumerate(front + back)}
    dag = sorted({(a, b) for a, b in edges if a != b and rank[a] < rank[b]})
    # Longest path layering over the DAG (Kahn's order, names breaking ties).
    preds: dict[str, list[str]] = defaultdict(list)
    remaining = {n: 0 for n in nodes}
    succ: dict[str, list[str]] = defaultdict(list)
    for a, b in dag:
        preds[b].append(a)
        succ[a].append(b)
        remaining[b] += 1
    layer = {n: 0 for n in nodes}
    ready = sorted(n for n in nodes if remaining[n] == 0)
    while ready:
        n = ready.pop(0)
        for m in succ[n]:
            layer[m] = max(layer[m], layer[n] + 1)
            remaining[m] -= 1
            if remaining[m] == 0:
                ready.append(m)
        ready.sort()
    layers: dict[int, list[str]] = defaultdict(list)
    for n in sorted(nodes):
        layers[layer[n]].append(n)
    neighbours: dict[str, list[str]] = defaultdict(list)
    for a, b in dag:
        neighbours[a].append(b)
        neighbours[b].append(a)
    pos = {n: i for nodes_in in layers.values() for i, n in enumerate(nodes_in)}
    order = sorted(layers)
    for sweep in range(sweeps):
        for k in order if sweep % 2 == 0 else reversed(order):
            ref = k - 1 if sweep % 2 == 0 else k + 1

            def bary(n: str, ref: int = ref) -> float:
                near = [pos[m] for m in neighbours[n] if layer[m] == ref]
                return sum(near) / len(near) if near else float(pos[n])
            layers[k].sort(key=lambda n: (bary(n), pos[n], n))
            pos.update({n: i for i, n in enumerate(layers[k])})
    return {n: (layer[n], pos[n]) for n in nodes}


def service_map_svg(graph: DependencyGraph, *, link: Callable[[str], str] | None = None,
                    max_nodes: int = 40, error_threshold: float = 0.05) -> str:
    """Nodes are services (linked through `link` when given) and uninstrumented peers; edges
    carry calls, error % and callee p95, red when at least `error_threshold` of calls fail."""
    edges = pair_edges(graph)
    if not edges:
        return empty("no calls between services in this window", cls="tt-service-map")
    services = set(graph.services)
    traffic: dict[str, int] = defaultdict(int)
    kind_of: dict[str, EdgeKind] = {}
    for e in edges:
        traffic[e.caller] += e.calls
        traffic[e.callee] += e.calls
        if e.callee not in services:
            kind_of[e.callee] = e.kind
    kept = set(sorted(traffic, key=lambda n: (-traffic[n], n))[:max_nodes])
    hidden = len(traffic) - len(kept)
    edges = [e for e in edges if e.caller in kept and e.callee in kept]
    nodes = sorted(kept)
    place = layout(nodes, [(e.caller, e.callee) for e in edges])
    per_layer: dict[int, int] = defaultdict(int)
    for layer, _ in place.values():
        per_layer[layer] += 1
    tallest = max(per_layer.values())
    height = MARGIN * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP + 20
    xy: dict[str, tuple[float, float]] = {}
    for n, (layer, p) in place.items():
        col_h = per_layer[layer] * NODE_H + (per_layer[layer] - 1) * ROW_GAP
        top = MARGIN + (height - 20 - 2 * MARGIN - col_h) / 2
        xy[n] = (MARGIN + layer * (NODE_W + COL_GAP), top + p * (NODE_H + ROW_GAP))
    width = MARGIN * 2 + (max(per_layer) + 1) * NODE_W + max(per_layer) * COL_GAP
    peak = max(e.calls for e in edges)
    taken: list[tuple[float, float, float, float]] = [
        (x, y, x + NODE_W, y + NODE_H) for x, y in xy.values()]
    body = [_edge(e, xy, peak, error_threshold, taken) for e in edges]
    body += [_node(n, xy[n], kind_of.get(n), traffic[n], link) for n in nodes]
    notes = ["edge labels: calls · error % · callee p95", f"red: ≥ {fmt_pct(error_threshold)} of calls fail"]
    if hidden:
        notes.append(f"{hidden} quieter nodes not shown")
    body.append(text(MARGIN, height - 6, "; ".join(notes), cls="note", size=10, fill=MUTED))
    label = f"Service map: {len(nodes)} nodes, {len(edges)} edges"
    return document(width, height, body, cls="tt-service-map", label=label)


def _node(name: str, at: tuple[float, float], peer: EdgeKind | None, calls: int,
          link: Callable[[str], str] | None) -> str:
    x, y = at
    colour = service_colour(name) if peer is None else "#f4f5f7"
    kind = "service" if peer is None else peer.value
    shape = el("rect", None, x=x, y=y, width=NODE_W, height=NODE_H, rx=6.0 if peer is None else 14.0,
               fill="#ffffff", stroke=colour if peer is None else EDGE_GREY, stroke_width=2.0,
               stroke_dasharray=None if peer is None else "4 3", cls="node-box")
    stripe = el("rect", None, x=x, y=y, width=6.0, height=NODE_H, rx=3.0, fill=colour,
                cls="node-stripe") if peer is None else ""
    parts = [title(f"{name} ({kind}): {calls:,} calls in or out"), shape, stripe,
             el("text", esc(clip_label(name, 21)), x=x + 14, y=y + 17, font_size=12.0, fill=TEXT,
                font_weight="600", cls="node-label"),
             text(x + 14, y + 32, kind if peer is not None else f"{fmt_count(calls)} calls",
                  cls="node-kind", size=10, fill=MUTED)]
    body = el("g", "".join(parts), cls=f"node {kind}", data_node=name)
    return linked(link(name), body) if link is not None and peer is None else body


def _bezier(p0: tuple[float, float], c1: tuple[float, float], c2: tuple[float, float],
            p1: tuple[float, float], t: float) -> tuple[float, float]:
    u = 1 - t
    return (u**3 * p0[0] + 3 * u * u * t * c1[0] + 3 * u * t * t * c2[0] + t**3 * p1[0],
            u**3 * p0[1] + 3 * u * u * t * c1[1] + 3 * u * t * t * c2[1] + t**3 * p1[1])


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _edge(e: PairEdge, xy: dict[str, tuple[float, float]], peak: int, threshold: float,
          taken: list[tuple[float, float, float, float]]) -> str:
    (ax, ay), (bx, by) = xy[e.caller], xy[e.callee]
    bad = e.error_rate >= threshold and e.errors > 0
    colour = ERROR if bad else EDGE_GREY
    if bx > ax:  # forward: right side to left side
        x1, y1, x2, y2 = ax + NODE_W, ay + NODE_H / 2, bx, by + NODE_H / 2
        dx = (x2 - x1) / 2
        c1, c2 = (x1 + dx, y1), (x2 - dx, y2)
    else:  # same layer or backwards (a cycle): loop under the boxes
        x1, y1, x2, y2 = ax + NODE_W / 2, ay + NODE_H, bx + NODE_W / 2, by + NODE_H
        drop = 30.0 + abs(ay - by) / 4
        c1, c2 = (x1, y1 + drop), (x2, y2 + drop)
    path = f"M{x1:.1f},{y1:.1f} C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} {x2:.1f},{y2:.1f}"
    stroke_w = 1.0 + 3.0 * math.log1p(e.calls) / math.log1p(max(peak, 1))
    # Arrowhead along the curve's end tangent (drawn, not a <marker>: no ids to clash in a page).
    tx, ty = x2 - c2[0], y2 - c2[1]
    norm = math.hypot(tx, ty) or 1.0
    ux, uy = tx / norm, ty / norm
    size = 6.0 + stroke_w
    head = (f"{x2:.1f},{y2:.1f} {x2 - ux * size - uy * size / 2:.1f},{y2 - uy * size + ux * size / 2:.1f} "
            f"{x2 - ux * size + uy * size / 2:.1f},{y2 - uy * size - ux * size / 2:.1f}")
    words = f"{fmt_count(e.calls)} · {fmt_pct(e.error_rate)} · {fmt_ms(e.p95_ms)}"
    lw = 5.6 * len(words) + 6
    # The label goes at the first point along the curve (from the middle outwards) where it
    # covers no node and no earlier label; failing that, at the middle.
    for t in (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8, 0.5):
        mx, my = _bezier((x1, y1), c1, c2, (x2, y2), t)
        box = (mx - lw / 2, my - 8, mx + lw / 2, my + 6)
        if not any(_overlaps(box, other) for other in taken):
            break
    taken.append(box)
    tip = (f"{e.caller} → {e.callee} ({e.kind.value}): {e.calls:,} calls, {e.errors:,} errors "
           f"({fmt_pct(e.error_rate)}), callee p95 {fmt_ms(e.p95_ms)}")
    parts = [title(tip),
             el("path", None, d=path, fill="none", stroke=colour, stroke_width=stroke_w,
                stroke_opacity=0.85, cls="edge-line"),
             el("polygon", None, points=head, fill=colour, cls="edge-head"),
             el("rect", None, x=mx - lw / 2, y=my - 8, width=lw, height=14.0, rx=3.0, fill="#ffffff",
                fill_opacity=0.85, cls="edge-label-bg"),
             text(mx, my + 3, words, cls="edge-label", size=10, fill=ERROR if bad else TEXT,
                  anchor="middle")]
    return el("g", "".join(parts), cls="edge error" if bad else "edge", data_caller=e.caller,
              data_callee=e.callee)
