"""Flow validation: do the traces of each expected flow (a spec, see `flow_spec`) contain
what they must, in the right order, no more often than allowed, fast enough and without
errors? Per flow: traces checked, traces violating, and per rule the violations with example
trace ids. The expected path and the most frequent observed path come along for diagrams.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from telltale.analyses.flow_spec import FlowSpec, OpMatcher, Rule, RuleKind
from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, flows_sql

COLUMNS = ["flow", "status", "traces", "violating", "rule", "violations", "worst", "examples"]


@dataclass(frozen=True)
class RuleResult:
    kind: RuleKind
    text: str
    violations: int
    examples: list[str]  # trace ids, earliest root first
    # The worst value among violating traces: a count (must_not_contain, max_count), spans of
    # `op` per `per` span (max_per), root duration in ms (max_duration) or errors (no_errors).
    worst: float | None = None


@dataclass(frozen=True)
class ObservedPath:
    """An order in which traces first reached the spec's operations, and how many did."""

    ops: list[str]
    traces: int


@dataclass(frozen=True)
class FlowResult:
    name: str
    root: str
    traces: int
    violating: int  # traces breaking at least one rule
    rules: list[RuleResult]
    expected_path: list[str]
    observed_paths: list[ObservedPath] = field(default_factory=list)

    @property
    def violated(self) -> bool:
        return any(r.violations for r in self.rules)

    @property
    def observed_path(self) -> list[str]:
        """The most frequent observed order ([] when no trace was checked)."""
        return self.observed_paths[0].ops if self.observed_paths else []

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["violated"] = self.violated
        out["observed_path"] = self.observed_path
        return out


@dataclass(frozen=True)
class FlowsReport:
    scope: Scope
    flows: list[FlowResult]

    @property
    def violated(self) -> bool:
        return any(f.violated for f in self.flows)

    def to_rows(self) -> Rows:
        rows: list[dict[str, Any]] = []
        notes: list[str] = []
        for f in self.flows:
            status = "FAIL" if f.violated else "ok"
            for r in f.rules:
                rows.append({"flow": f.name, "status": status, "traces": f.traces,
                             "violating": f.violating, "rule": r.text, "violations": r.violations,
                             "worst": r.worst, "examples": r.examples})
            notes += _notes(f)
        failed = sum(1 for f in self.flows if f.violated)
        notes.append(f"{failed} of {len(self.flows)} flows violated" if failed
                     else f"all {len(self.flows)} flows pass")
        return Rows("Flow checks", COLUMNS, rows, notes,
                    extra={"violated": self.violated,
                           "flows": [f.to_dict() for f in self.flows]})


def _notes(f: FlowResult) -> list[str]:
    """One line per flow (and one per unmet min_traces): what a CI log should show."""
    out: list[str] = []
    if f.traces == 0:
        out.append(f"{f.name}: no trace with root {f.root!r} in the window")
    broken = sum(1 for r in f.rules if r.violations and r.kind is not RuleKind.MIN_TRACES)
    if broken:
        out.append(f"{f.name}: {f.violating:,} of {f.traces:,} traces violate "
                   f"{broken} rule{'s' if broken != 1 else ''}")
    elif f.traces and not f.violated:
        out.append(f"{f.name}: all {f.traces:,} traces pass")
    out += [f"{f.name}: only {f.traces:,} traces checked ({r.text})"
            for r in f.rules if r.kind is RuleKind.MIN_TRACES and r.violations]
    return out


def check_flows(store: Store, scope: Scope, specs: list[FlowSpec], *, examples: int = 5,
                paths: int = 3) -> FlowsReport:
    """Check every flow against the traces whose root matches it, root starting in `scope`."""
    return FlowsReport(scope, [_check(store, scope, spec, examples, paths) for spec in specs])


def _check(store: Store, scope: Scope, spec: FlowSpec, examples: int, top: int) -> FlowResult:
    matchers = spec.matchers()
    ids = {m.text: i for i, m in enumerate(matchers)}
    bound_matchers = [_bind_matcher(i, m) for i, m in enumerate(matchers)]
    in_sql = [(i, r) for i, r in enumerate(spec.rules) if r.kind is not RuleKind.MIN_TRACES]
    # A rule that never fires keeps the rule list typed when the flow has only min_traces.
    bound_rules = [_bind_rule(i, r, ids) for i, r in in_sql] or [
        {"rid": len(spec.rules), "kind": "none", "a": -1, "b": -1, "n": 0, "limit_ns": 0}]
    # rid -1 is the whole flow; a rule absent from the answer had no trace to look at.
    found = {rid: (int(checked), int(bad), list(ex or []), worst) for rid, checked, bad, ex, worst
             in flows_sql.rule_results(store.con, scope, bound_matchers, bound_rules, examples)}
    traces, violating, _, _ = found.get(-1, (0, 0, [], None))
    results: list[RuleResult] = []
    for i, rule in enumerate(spec.rules):
        if rule.kind is RuleKind.MIN_TRACES:
            results.append(RuleResult(rule.kind, rule.text, int(traces < rule.n), [],
                                      float(traces) if traces < rule.n else None))
            continue
        _, bad, ex, worst = found.get(i, (0, 0, [], None))
        results.append(RuleResult(rule.kind, rule.text, bad, ex,
                                  None if worst is None else float(worst)))
    observed = [ObservedPath([matchers[mid].text for mid in path], int(n))
                for path, n in flows_sql.paths(store.con, scope, bound_matchers, top)]
    return FlowResult(spec.name, spec.root.text, traces, violating, results,
                      spec.expected_path(), observed)


def _bind_matcher(mid: int, m: OpMatcher) -> dict[str, Any]:
    return {"mid": mid, "svc": m.service, "svc_glob": m.service_glob, "name": m.name,
            "name_glob": m.name_glob}


def _bind_rule(rid: int, rule: Rule, ids: dict[str, int]) -> dict[str, Any]:
    return {"rid": rid, "kind": rule.kind.value,
            "a": ids[rule.a.text] if rule.a else -1, "b": ids[rule.b.text] if rule.b else -1,
            "n": rule.n, "limit_ns": rule.limit_ns}
