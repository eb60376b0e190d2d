"""Dependency graph: which service (or operation) calls which, how often, how often it fails and
how long the callee takes; plus the uninstrumented peers (databases, brokers, external APIs)
seen only from client spans, and a count of client spans whose peer nobody can name.

Edges come from parent/child spans across services and from span links of queue consumers (see
store/deps_sql.py). A span whose parent was never stored (an orphan) has no known caller: it
adds no edge, rather than a guessed one. The window selects calling spans by their start.

The graph is read from the span index (store/span_index_sql.py) when it covers every stored
span, and from the raw spans otherwise (a store from before the index opened read-only, or spans
written outside telltale's write path): the same graph, slower, and the notes say so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, deps_sql, span_index

NS_PER_MS = 1_000_000


class DepsLevel(StrEnum):
    SERVICE = "service"
    OPERATION = "operation"


class EdgeKind(StrEnum):
    CALL = "call"  # an instrumented service calls another
    MESSAGING = "messaging"  # producer → consumer through a queue
    DATABASE = "database"  # peers below: seen only from the caller's client spans
    BROKER = "broker"
    EXTERNAL = "external"

    @property
    def instrumented(self) -> bool:
        """Whether the callee is a service with spans of its own."""
        return self in (EdgeKind.CALL, EdgeKind.MESSAGING)


@dataclass(frozen=True)
class Edge:
    kind: EdgeKind
    caller: str
    callee: str
    calls: int
    errors: int
    p50_ms: float
    p95_ms: float
    caller_operation: str | None = None  # operation level only
    callee_operation: str | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass
class DependencyGraph:
    level: DepsLevel
    edges: list[Edge]
    # Client / producer spans with no callee span and nothing naming their peer, per service.
    unpaired: Counter[str] = field(default_factory=Counter)
    indexed: bool = True  # read from the span index (else from the raw spans)

    @property
    def unpaired_client_spans(self) -> int:
        return sum(self.unpaired.values())

    @property
    def services(self) -> list[str]:
        """Instrumented services on either end of an edge."""
        names = {e.caller for e in self.edges}
        names |= {e.callee for e in self.edges if e.kind.instrumented}
        return sorted(names)

    @property
    def peers(self) -> list[str]:
        return sorted({e.callee for e in self.edges if not e.kind.instrumented})

    def notes(self) -> list[str]:
        notes = []
        if self.unpaired:
            worst = ", ".join(f"{s}: {n:,}" for s, n in sorted(
                self.unpaired.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
            notes.append(f"{self.unpaired_client_spans:,} client/producer spans reached no "
                         f"instrumented callee and name no peer, so they are not drawn ({worst})")
        if not self.edges:
            notes.append("no calls between services in scope")
        if not self.indexed:
            notes.append("read from the raw spans: the span index is missing or incomplete (open "
                         "the store for writing once to build it)")
        return notes

    def to_rows(self) -> Rows:
        per_op = self.level is DepsLevel.OPERATION
        columns = ["caller"] + (["caller_operation"] if per_op else []) + ["callee"]
        columns += (["callee_operation"] if per_op else []) + [
            "kind", "calls", "errors", "error_pct", "p50_ms", "p95_ms"]
        rows = [{"caller": e.caller, "caller_operation": e.caller_operation, "callee": e.callee,
                 "callee_operation": e.callee_operation, "kind": e.kind.value, "calls": e.calls,
                 "errors": e.errors, "error_pct": 100.0 * e.error_rate, "p50_ms": e.p50_ms,
                 "p95_ms": e.p95_ms} for e in self.edges]
        return Rows(f"Dependencies by {self.level.value}", columns,
                    [{k: r[k] for k in columns} for r in rows], self.notes(),
                    extra={"services": self.services, "peers": self.peers,
                           "unpaired_client_spans": self.unpaired_client_spans,
                           "unpaired_by_service": dict(sorted(self.unpaired.items()))})


def dependencies(store: Store, scope: Scope, *, level: DepsLevel | str = DepsLevel.SERVICE,
                 use_index: bool | None = None) -> DependencyGraph:
    """Edges between services (or operations) called from spans starting in the scope's window;
    --service / --operation filters keep the edges touching them at either end. `use_index`
    forces a path (None: the index when complete); forcing it on an incomplete index is wrong."""
    level = DepsLevel(level)
    edges: list[Edge] = []
    unpaired: Counter[str] = Counter()
    indexed = span_index.complete(store.con) if use_index is None else use_index
    for kind, caller, caller_op, target, target_op, calls, errors, q in deps_sql.edges(
            store.con, scope, level.value, indexed=indexed):
        if kind == "unpaired":
            unpaired[str(caller)] += int(calls)
            continue
        edges.append(Edge(EdgeKind(kind), str(caller), str(target), int(calls), int(errors),
                          _ms(q[0]), _ms(q[1]), _text(caller_op), _text(target_op)))
    edges.sort(key=lambda e: (e.caller, e.caller_operation or "", e.callee,
                              e.callee_operation or "", e.kind.value))
    return DependencyGraph(level, edges, unpaired, indexed)


def _ms(ns: Any) -> float:
    return float(ns) / NS_PER_MS


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
