"""The dependency graph as a Mermaid `flowchart`: services (or operations, grouped per
service) and the peers seen only from client spans, edges labelled with calls, error % and
the callee's p95. Pure function of a `DependencyGraph`.

Large graphs are cut, never silently: `top` keeps the busiest edges, `max_nodes` then drops
the quietest edges until the nodes fit, and a note node says what was left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from telltale.analyses.deps import DependencyGraph, DepsLevel, Edge, EdgeKind
from telltale.render.mermaid_text import NodeIds, label, ms, percent, quoted

MAX_NODES = 60
# Mermaid refuses diagrams over 50,000 characters (maxTextSize) and 500 edges (maxEdges).
MAX_EDGES = 150
ERROR_EDGE = 0.05  # error share from which an edge is drawn red
ERROR_STYLE = "stroke:#d62728,stroke-width:3px,color:#d62728"
# Node shapes per kind of callee: a service is a box, the peers below say what they are.
_SHAPES = {EdgeKind.DATABASE: ('[(', ')]'), EdgeKind.BROKER: ('[/', '/]'),
           EdgeKind.EXTERNAL: ('([', '])')}
CLASS_DEFS = [
    "    classDef peer fill:#f4f4f4,stroke:#888,stroke-dasharray:4 3",
    "    classDef failing fill:#fde0dd,stroke:#d62728,stroke-width:2px",
    "    classDef note fill:#fff8dc,stroke:#c9a227,color:#555",
]


@dataclass(frozen=True)
class _Node:
    name: str  # service or peer
    operation: str  # '' at service level
    peer: EdgeKind | None  # the kind of peer, None for an instrumented service

    @property
    def key(self) -> str:
        return f"{self.name}\x00{self.operation}"


def _ends(edge: Edge, per_op: bool) -> tuple[_Node, _Node]:
    caller = _Node(edge.caller, (edge.caller_operation or "") if per_op else "", None)
    callee = _Node(edge.callee, (edge.callee_operation or "") if per_op else "",
                   None if edge.kind.instrumented else edge.kind)
    return caller, callee


def select_edges(graph: DependencyGraph, top: int | None = None,
                 max_nodes: int = MAX_NODES, max_edges: int = MAX_EDGES) -> list[Edge]:
    """The edges drawn: the `top` busiest (at most `max_edges`), then the busiest that keep
    the diagram within `max_nodes` nodes; ties go to the alphabetically first edge."""
    per_op = graph.level is DepsLevel.OPERATION
    ranked = sorted(graph.edges, key=lambda e: (-e.calls, -e.errors, e.caller,
                                                 e.caller_operation or "", e.callee,
                                                 e.callee_operation or "", e.kind.value))
    ranked = ranked[:max(min(top if top is not None else max_edges, max_edges), 0)]
    kept: list[Edge] = []
    nodes: set[str] = set()
    for edge in ranked:
        ends = {n.key for n in _ends(edge, per_op)}
        if len(nodes | ends) <= max_nodes:
            kept.append(edge)
            nodes |= ends
    return [e for e in graph.edges if e in kept]  # back in the graph's (sorted) order


def dependency_flowchart(graph: DependencyGraph, *, top: int | None = None,
                         max_nodes: int = MAX_NODES, direction: str = "LR",
                         error_threshold: float = ERROR_EDGE) -> str:
    """A `flowchart` of `graph`. Edges at or above `error_threshold` errors are red; services
    whose incoming calls fail that often are filled red; peers are dashed, shaped by kind
    (database cylinder, broker parallelogram, external API stadium); queue hops are dotted."""
    per_op = graph.level is DepsLevel.OPERATION
    edges = select_edges(graph, top, max_nodes)
    nodes: dict[str, _Node] = {}
    for edge in edges:
        for node in _ends(edge, per_op):
            # A name seen as a caller is a service, even if another edge reaches it as a peer.
            if node.key not in nodes or node.peer is None:
                nodes[node.key] = node
    ids = NodeIds("n", nodes)
    groups = NodeIds("g", {n.name for n in nodes.values()})
    failing = _failing(edges, per_op, error_threshold)
    out = [f"flowchart {direction}"]
    if per_op:  # operations grouped in a subgraph per service / peer
        by_name: dict[str, list[_Node]] = {}
        for node in sorted(nodes.values(), key=lambda n: (n.name, n.operation)):
            by_name.setdefault(node.name, []).append(node)
        for name, members in by_name.items():
            out.append(f"    subgraph {groups[name]}[{quoted(name or '(no service)', 60)}]")
            out += [f"        {_node_line(ids[n.key], n, n.operation or '(any)')}" for n in members]
            out.append("    end")
    else:
        out += [f"    {_node_line(ids[n.key], n, n.name or '(no service)')}"
                for n in sorted(nodes.values(), key=lambda n: n.name)]
    # Edges joining the same two nodes (a call, and client spans naming the callee whose
    # server span was lost) share one arrow with a line each, busiest first.
    pairs: dict[tuple[str, str], list[Edge]] = {}
    for edge in edges:
        caller, callee = _ends(edge, per_op)
        pairs.setdefault((caller.key, callee.key), []).append(edge)
    red: list[int] = []
    for i, ((caller_key, callee_key), group) in enumerate(pairs.items()):
        group.sort(key=lambda e: (-e.calls, e.kind.value))
        text = "<br>".join(label(_edge_text(e, nodes[callee_key].peer is None), 100) for e in group)
        messaging = all(e.kind is EdgeKind.MESSAGING for e in group)
        arrow = "-.->" if messaging else "-->"
        out.append(f'    {ids[caller_key]} {arrow}|"{text}"| {ids[callee_key]}')
        if any(e.errors and e.error_rate >= error_threshold for e in group):
            red.append(i)
    left = _left_out(graph, edges, per_op)
    if left:
        out.append(f"    leftout[{quoted(left, 200)}]:::note")
    if not graph.edges:
        out.append(f"    empty[{quoted('no calls between services in scope')}]:::note")
    out += CLASS_DEFS
    peers = sorted(ids[k] for k, n in nodes.items() if n.peer is not None)
    if peers:
        out.append(f"    class {','.join(peers)} peer")
    bad = sorted(ids[k] for k in failing if k in nodes)
    if bad:
        out.append(f"    class {','.join(bad)} failing")
    if red:
        out.append(f"    linkStyle {','.join(map(str, red))} {ERROR_STYLE}")
    return "\n".join(out) + "\n"


def _edge_text(edge: Edge, to_service: bool) -> str:
    text = f"{edge.calls:,} calls · {percent(edge.error_rate)} errors · p95 {ms(edge.p95_ms)}"
    if not edge.kind.instrumented and to_service:
        # A service reached by client spans whose server span was never stored.
        text = f"{text} ({edge.kind.value}, no callee span)"
    return text


def _node_line(node_id: str, node: _Node, text: str) -> str:
    left, right = _SHAPES.get(node.peer, ("[", "]")) if node.peer else ("[", "]")
    return f"{node_id}{left}{quoted(text, 80)}{right}"


def _failing(edges: list[Edge], per_op: bool, threshold: float) -> set[str]:
    """Callees whose incoming calls (all drawn edges together) fail at least `threshold`."""
    calls: dict[str, list[int]] = {}
    for edge in edges:
        callee = _ends(edge, per_op)[1].key
        total = calls.setdefault(callee, [0, 0])
        total[0] += edge.calls
        total[1] += edge.errors
    return {k for k, (n, err) in calls.items() if err and n and err / n >= threshold}


def _left_out(graph: DependencyGraph, drawn: list[Edge], per_op: bool) -> str:
    missing = [e for e in graph.edges if e not in drawn]
    if not missing:
        return ""
    shown = {n.key for e in drawn for n in _ends(e, per_op)}
    every = {n.key for e in graph.edges for n in _ends(e, per_op)}
    calls = sum(e.calls for e in missing)
    return (f"{len(missing):,} quieter edges ({calls:,} calls) and {len(every - shown):,} "
            f"nodes not drawn (telltale deps lists all)")

