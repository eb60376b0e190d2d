"""Expected-flow specs: a TOML file of `[[flow]]` tables saying what a flow's traces must
contain, in what order, how often, how fast. Parsed here into typed rules (docs/flows.md has
the format); `analyses.flows` checks stored traces against them.

A spec that cannot be used raises `SpecError` with one line naming the file, line and key, so
a CI job shows exactly what to fix.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from telltale.window import WindowError, parse_duration

_GLOB_CHARS = re.compile(r"[*?\[]")
# `service:name` when the text before the first colon could be a service name (no spaces or
# slashes), so `GET /a:b` stays a plain span name.
_SERVICE_PREFIX = re.compile(r"^([^\s:/]+):(.+)$")
_FLOW_HEADER = re.compile(r"^\s*\[\[\s*flow\s*\]\]")
_KEYS = {"name", "root", "service", "must_contain", "must_not_contain", "order", "max_count",
         "max_per", "max_duration", "no_errors", "min_traces"}


class SpecError(ValueError):
    """A flow spec that cannot be used (bad TOML, unknown key, wrong value type)."""


class RuleKind(StrEnum):
    MUST_CONTAIN = "must_contain"
    MUST_NOT_CONTAIN = "must_not_contain"
    ORDER = "order"
    MAX_COUNT = "max_count"
    MAX_PER = "max_per"
    MAX_DURATION = "max_duration"
    NO_ERRORS = "no_errors"
    MIN_TRACES = "min_traces"  # about the flow, not a trace: enough traces were checked


@dataclass(frozen=True)
class OpMatcher:
    """Which spans an operation names: exact span name, `service:name`, or globs of either."""

    text: str
    service: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> OpMatcher:
        m = _SERVICE_PREFIX.match(text)
        if m:
            return cls(text, m.group(1), m.group(2))
        return cls(text, None, text)

    @property
    def service_glob(self) -> bool:
        return self.service is not None and bool(_GLOB_CHARS.search(self.service))

    @property
    def name_glob(self) -> bool:
        return bool(_GLOB_CHARS.search(self.name))


@dataclass(frozen=True)
class Rule:
    kind: RuleKind
    a: OpMatcher | None = None  # the operation the rule is about
    b: OpMatcher | None = None  # order: must start after `a`; max_per: the "per" operation
    n: int = 0
    limit_ns: int = 0

    @property
    def text(self) -> str:
        a = f'"{self.a.text}"' if self.a else ""
        b = f'"{self.b.text}"' if self.b else ""
        match self.kind:
            case RuleKind.ORDER:
                return f"order: {a} starts before {b}"
            case RuleKind.MAX_COUNT:
                return f"max_count: at most {self.n} {a} per trace"
            case RuleKind.MAX_PER:
                return f"max_per: at most {self.n} {a} per {b}"
            case RuleKind.MAX_DURATION:
                return f"max_duration: root takes at most {self.limit_ns / 1e6:g}ms"
            case RuleKind.NO_ERRORS:
                return "no_errors: no span has error status"
            case RuleKind.MIN_TRACES:
                return f"min_traces: at least {self.n} traces checked"
            case _:
                return f"{self.kind.value}: {a}"


@dataclass(frozen=True)
class FlowSpec:
    name: str
    root: OpMatcher
    rules: tuple[Rule, ...]

    def matchers(self) -> list[OpMatcher]:
        """Every operation the spec names, root first, in order of first mention."""
        seen: dict[str, OpMatcher] = {self.root.text: self.root}
        for rule in self.rules:
            for m in (rule.a, rule.b):
                if m is not None:
                    seen.setdefault(m.text, m)
        return list(seen.values())

    def expected_path(self) -> list[str]:
        """Root, then the required operations in an order every `order` rule agrees with
        (ties keep the order they are first named in)."""
        ops = [m.text for m in self.matchers()[1:]
               if any(r.kind in (RuleKind.MUST_CONTAIN, RuleKind.ORDER)
                      and m in (r.a, r.b) for r in self.rules)]
        edges = {(r.a.text, r.b.text) for r in self.rules
                 if r.kind is RuleKind.ORDER and r.a is not None and r.b is not None}
        path: list[str] = []
        left = list(ops)
        while left:
            ready = next((op for op in left if not any(b == op and a in left for a, b in edges)),
                         None)
            if ready is None:  # a cycle: parse_spec refuses these, keep the rest as listed
                path.extend(left)
                break
            path.append(ready)
            left.remove(ready)
        return [self.root.text, *path]


def load_spec(path: Path | str) -> list[FlowSpec]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read spec: {exc}") from exc
    return parse_spec(text, str(path))


def parse_spec(text: str, source: str = "spec") -> list[FlowSpec]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: invalid TOML: {exc}") from exc
    for key in doc:
        if key != "flow":
            raise SpecError(f"{source}:{_line(text, None, key) or 1}: unknown top-level key "
                            f"{key!r} (a spec is a list of [[flow]] tables)")
    tables = doc.get("flow")
    if not isinstance(tables, list) or not tables:
        raise SpecError(f"{source}: no [[flow]] tables")
    flows: list[FlowSpec] = []
    for i, table in enumerate(tables):
        flow = _Flow(text, source, i, table)
        spec = flow.parse()
        if any(f.name == spec.name for f in flows):
            raise flow.error("name", f"another flow is already named {spec.name!r}")
        flows.append(spec)
    return flows


class _Flow:
    """One `[[flow]]` table being read; errors point at its line for the key."""

    def __init__(self, text: str, source: str, index: int, table: Any) -> None:
        self.text, self.source, self.index = text, source, index
        if not isinstance(table, dict):
            raise self.error(None, "must be a table")
        self.table: dict[str, Any] = table

    def error(self, key: str | None, problem: str) -> SpecError:
        line = _line(self.text, self.index, key)
        where = f"{self.source}:{line}" if line else self.source
        label = self.table.get("name") if hasattr(self, "table") else None
        flow = f"flow {self.index + 1}" + (f" ({label})" if isinstance(label, str) else "")
        return SpecError(f"{where}: {flow}: {key + ': ' if key else ''}{problem}")

    def parse(self) -> FlowSpec:
        for key in self.table:
            if key not in _KEYS:
                raise self.error(key, f"unknown key (expected one of {', '.join(sorted(_KEYS))})")
        name = self.string("name", required=True)
        root = OpMatcher.parse(self.string("root", required=True))
        service = self.string("service")
        if service:
            if root.service is not None:
                raise self.error("service", "root already names a service (service:name)")
            root = OpMatcher(f"{service}:{root.name}", service, root.name)
        rules = [Rule(RuleKind.MUST_CONTAIN, a) for a in self.ops("must_contain")]
        rules += self.order()
        rules += [Rule(RuleKind.MAX_COUNT, OpMatcher.parse(op), n=self.count("max_count", n))
                  for op, n in self.mapping("max_count").items()]
        rules += self.max_per()
        rules += [Rule(RuleKind.MUST_NOT_CONTAIN, a) for a in self.ops("must_not_contain")]
        if "max_duration" in self.table:
            rules.append(Rule(RuleKind.MAX_DURATION, limit_ns=self.duration("max_duration")))
        if self.table.get("no_errors", False) is not False:
            if self.table["no_errors"] is not True:
                raise self.error("no_errors", "must be true or false")
            rules.append(Rule(RuleKind.NO_ERRORS))
        if "min_traces" in self.table:
            rules.append(Rule(RuleKind.MIN_TRACES, n=self.count("min_traces",
                                                                self.table["min_traces"])))
        if not rules:
            raise self.error(None, "flow has no rules (must_contain, order, max_count, ...)")
        return FlowSpec(name, root, tuple(rules))

    def string(self, key: str, required: bool = False) -> str:
        value = self.table.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "required" if value is None else "must be a non-empty string")
        return value

    def ops(self, key: str, value: Any = None) -> list[OpMatcher]:
        value = self.table.get(key, []) if value is None else value
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, "must be a list of operation names")
        return [OpMatcher.parse(v) for v in value]

    def order(self) -> list[Rule]:
        value = self.table.get("order", [])
        if not isinstance(value, list):
            raise self.error("order", 'must be a list of lists, e.g. [["a", "b"]]')
        rules: list[Rule] = []
        for chain in value:
            ops = self.ops("order", chain)
            if len(ops) < 2:
                raise self.error("order", 'each entry lists at least two operations: ["a", "b"]')
            rules += [Rule(RuleKind.ORDER, a, b) for a, b in itertools.pairwise(ops)]
        cycle = _cycle([(r.a.text, r.b.text) for r in rules if r.a and r.b])
        if cycle:
            raise self.error("order", "rules form a cycle: " + " → ".join(cycle))
        return rules

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, 'must be a table, e.g. { "db.query" = 1 }')
        return value

    def count(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(key, f"{value!r} is not a count (a whole number >= 0)")
        return value

    def max_per(self) -> list[Rule]:
        value = self.table.get("max_per", [])
        entries = [value] if isinstance(value, dict) else value
        if not isinstance(entries, list):
            raise self.error("max_per", 'must be a table { op = "a", per = "b", n = 1 } or a list')
        rules: list[Rule] = []
        for entry in entries:
            if not isinstance(entry, dict) or set(entry) - {"op", "per", "n"} \
                    or not isinstance(entry.get("op"), str) or not isinstance(entry.get("per"), str):
                raise self.error("max_per", 'each entry is { op = "a", per = "b", n = 1 }')
            rules.append(Rule(RuleKind.MAX_PER, OpMatcher.parse(entry["op"]),
                              OpMatcher.parse(entry["per"]), n=self.count("max_per", entry.get("n", 1))))
        return rules

    def duration(self, key: str) -> int:
        value = self.table[key]
        if not isinstance(value, str):
            raise self.error(key, f'{value!r} is not a duration: write it with a unit, e.g. "800ms"')
        try:
            return parse_duration(value)
        except WindowError as exc:
            raise self.error(key, str(exc)) from exc


def _cycle(edges: list[tuple[str, str]]) -> list[str]:
    """A cycle in the `order` graph as a path (first and last equal), or [] if none."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)

    def walk(node: str, trail: list[str]) -> list[str]:
        if node in trail:
            return [*trail[trail.index(node):], node]
        for nxt in graph.get(node, []):
            found = walk(nxt, [*trail, node])
            if found:
                return found
        return []

    for start in graph:
        found = walk(start, [])
        if found:
            return found
    return []


def _line(text: str, flow_index: int | None, key: str | None) -> int | None:
    """1-based line of `key` inside the flow_index-th [[flow]] table (top level when None),
    or of the table's header when the key is not written there."""
    lines = text.splitlines()
    headers = [i for i, ln in enumerate(lines) if _FLOW_HEADER.match(ln)]
    if flow_index is None:
        start, end = 0, headers[0] if headers else len(lines)
    elif flow_index < len(headers):
        start = headers[flow_index]
        end = headers[flow_index + 1] if flow_index + 1 < len(headers) else len(lines)
    else:  # written as `flow = [...]`: no header to point at
        return None
    if key is not None:
        k = re.escape(key)
        pattern = re.compile(rf"""^\s*(?:["']?{k}["']?\s*=|\[+\s*flow\.{k}\s*\]+)""")
        for i in range(start, end):
            if pattern.match(lines[i]):
                return i + 1
    return start + 1 if flow_index is not None else None
