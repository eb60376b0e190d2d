"""Expected flows as a Mermaid `flowchart`: per flow of a spec, the expected path, the most
frequent observed paths (the order traces first reached the spec's operations) and every rule
with its verdict. Pure function of the `flows` analysis result.

An observed step is green when it sits where the expected path has it, amber when the
expected path has it elsewhere (out of order), grey when the expected path does not list it
(e.g. an operation a max_count rule names); expected steps a path never reached are listed in
a red "missing" box at the end of that path.
"""

from __future__ import annotations

from collections.abc import Sequence

from telltale.analyses.flows import FlowResult, FlowsReport, ObservedPath
from telltale.render.mermaid_text import label, quoted

MAX_PATHS = 3
CLASS_DEFS = [
    "    classDef expected fill:#e8f0fe,stroke:#4a6fa5",
    "    classDef inorder fill:#e6f4ea,stroke:#2e7d32",
    "    classDef misplaced fill:#fff3cd,stroke:#e69500,stroke-width:2px",
    "    classDef other fill:#f1f1f1,stroke:#999",
    "    classDef missing fill:#fde0dd,stroke:#d62728,stroke-width:2px,stroke-dasharray:4 3",
    "    classDef pass fill:#e6f4ea,stroke:#2e7d32",
    "    classDef fail fill:#fde0dd,stroke:#d62728,stroke-width:2px",
]


def common_order(expected: Sequence[str], observed: Sequence[str]) -> set[int]:
    """Indexes into `observed` of a longest subsequence it shares with `expected`: the steps
    that are in the expected order (the rest of the shared steps are out of order)."""
    n, m = len(expected), len(observed)
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best[i][j] = (best[i + 1][j + 1] + 1 if expected[i] == observed[j]
                          else max(best[i + 1][j], best[i][j + 1]))
    keep: set[int] = set()
    i = j = 0
    while i < n and j < m:
        if expected[i] == observed[j]:
            keep.add(j)
            i, j = i + 1, j + 1
        elif best[i + 1][j] >= best[i][j + 1]:
            i += 1
        else:
            j += 1
    return keep


def _traces(n: int) -> str:
    return f"{n:,} trace" + ("" if n == 1 else "s")


def _chain(ids: list[str]) -> str:
    return " --> ".join(ids)


def _flow_lines(flow: FlowResult, p: str, max_paths: int) -> tuple[list[str], dict[str, list[str]]]:
    """The subgraph of one flow (ids prefixed `p`) and the ids to put in each class."""
    classes: dict[str, list[str]] = {}
    status = "FAIL" if flow.violated else ("pass" if flow.traces else "no traces")
    head = f"{flow.name} · {status} · " + (
        f"{flow.violating:,} of {_traces(flow.traces)} violate a rule" if flow.traces
        else f"no trace with root {flow.root}")
    out = [f"    subgraph {p}[{quoted(head, 160)}]", "        direction TB"]
    exp = [f"{p}_e{i}" for i in range(len(flow.expected_path))]
    out += [f"        subgraph {p}_exp[{quoted('expected path')}]", "            direction LR"]
    out += [f"            {node}[{quoted(op)}]" for node, op in zip(exp, flow.expected_path, strict=True)]
    if len(exp) > 1:
        out.append(f"            {_chain(exp)}")
    out.append("        end")
    classes.setdefault("expected", []).extend(exp)
    lanes = [f"{p}_exp"]
    paths: list[ObservedPath] = flow.observed_paths[:max(max_paths, 0)]
    for k, path in enumerate(paths):
        lane = f"{p}_p{k}"
        lanes.append(lane)
        share = f"{path.traces:,} of {_traces(flow.traces)}" if flow.traces else _traces(path.traces)
        title = ("most frequent observed path" if k == 0 else "observed path") + f" · {share}"
        out += [f"        subgraph {lane}[{quoted(title)}]", "            direction LR"]
        ids = [f"{lane}_{j}" for j in range(len(path.ops))]
        in_order = common_order(flow.expected_path, path.ops)
        for j, (node, op) in enumerate(zip(ids, path.ops, strict=True)):
            out.append(f"            {node}[{quoted(op)}]")
            kind = "inorder" if j in in_order else (
                "misplaced" if op in flow.expected_path else "other")
            classes.setdefault(kind, []).append(node)
        missing = [op for op in flow.expected_path if op not in path.ops]
        if missing:
            ids.append(f"{lane}_missing")
            out.append(f"            {lane}_missing[{quoted('missing: ' + ', '.join(missing), 200)}]")
            classes.setdefault("missing", []).append(f"{lane}_missing")
        if len(ids) > 1:
            out.append(f"            {_chain(ids)}")
        out.append("        end")
    left = len(flow.observed_paths) - len(paths)
    rules = f"{p}_rules"
    lanes.append(rules)
    out += [f"        subgraph {rules}[{quoted('rules')}]", "            direction LR"]
    # One box of broken rules and one of kept rules, a line each: compact, and colored.
    for verdict, members in (("fail", [r for r in flow.rules if r.violations]),
                             ("pass", [r for r in flow.rules if not r.violations])):
        if not members:
            continue
        lines = [f"✗ {r.text} · {_traces(r.violations)}" + (f" · e.g. {r.examples[0]}" if r.examples else "")
                 if r.violations else f"✓ {r.text}" for r in members]
        out.append(f'            {rules}_{verdict}["{"<br>".join(label(ln, 200) for ln in lines)}"]')
        classes.setdefault(verdict, []).append(f"{rules}_{verdict}")
    if left > 0:
        out.append(f"            {p}_more[{quoted(f'{left} rarer observed paths not drawn')}]")
    out.append("        end")
    # Invisible links stack the lanes top to bottom instead of side by side.
    out.append(f"        {' ~~~ '.join(lanes)}")
    out.append("    end")
    return out, classes


def flows_diagram(flows: FlowsReport | Sequence[FlowResult], *, max_paths: int = MAX_PATHS) -> str:
    """One `flowchart` with a subgraph per flow: expected path, top observed paths, rules."""
    results = flows.flows if isinstance(flows, FlowsReport) else list(flows)
    # Wider text boxes than the default 200 px: rule texts and op names are long.
    out = ["---", "config:", "  flowchart:", "    wrappingWidth: 420", "---", "flowchart TB"]
    classes: dict[str, list[str]] = {}
    for i, flow in enumerate(results):
        lines, found = _flow_lines(flow, f"f{i}", max_paths)
        out += lines
        for name, ids in found.items():
            classes.setdefault(name, []).extend(ids)
    if len(results) > 1:  # one flow under the other, in spec order
        out.append("    " + " ~~~ ".join(f"f{i}" for i in range(len(results))))
    if not results:
        out.append(f"    empty[{quoted('no flows in the spec')}]")
    out += CLASS_DEFS
    out += [f"    class {','.join(ids)} {name}" for name, ids in sorted(classes.items()) if ids]
    return "\n".join(out) + "\n"


def flow_diagram(flow: FlowResult, *, max_paths: int = MAX_PATHS) -> str:
    """One flow's expected vs observed paths (the same drawing as `flows_diagram`)."""
    return flows_diagram([flow], max_paths=max_paths)
