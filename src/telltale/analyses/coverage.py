"""Handler coverage: which of the code's handlers (routes and functions, see `code_scan`) the
spans in a window exercised — calls, errors and p95 per handler — which were never called,
and which spans name a route or function the code does not have.

A route is exercised by spans whose `http.route` (or a server span's `METHOD /route` name)
normalises to its template with a compatible method, or that name its function in
`code.function.name` / `code.namespace` + `code.function` or as the span name. Function
coverage is only reported when the spans carry code attributes or name functions: otherwise
every function would look dead for want of instrumentation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from telltale.analyses.code_scan import CodeScan, Handler, HandlerKind
from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, coverage_sql

COLUMNS = ["status", "kind", "method", "route", "function", "file", "line", "service", "calls",
           "errors", "p95_ms"]
EXERCISED, NEVER, UNKNOWN = "exercised", "never exercised", "unknown to code"


@dataclass(frozen=True)
class HandlerUsage:
    handler: Handler
    template: str  # the route as compared ('/users/{}'); '' for functions
    calls: int = 0
    errors: int = 0
    p95_ms: float | None = None
    services: tuple[str, ...] = ()

    @property
    def exercised(self) -> bool:
        return self.calls > 0


@dataclass(frozen=True)
class UnknownUsage:
    """Spans naming a route or function that no handler in the code matches."""

    service: str
    kind: HandlerKind
    method: str
    key: str  # route template or function name
    calls: int
    errors: int
    p95_ms: float | None


@dataclass(frozen=True)
class KindSummary:
    handlers: int
    exercised: int

    @property
    def percent(self) -> float | None:
        return 100.0 * self.exercised / self.handlers if self.handlers else None


@dataclass(frozen=True)
class CoverageReport:
    scan: CodeScan
    handlers: list[HandlerUsage]
    unknown: list[UnknownUsage]
    spans: int  # spans in scope
    code_spans: int  # of which carry code.function(.name)

    @property
    def functions_measured(self) -> bool:
        """Do the spans say which functions ran (else function rows would all be 'never')?"""
        return self.code_spans > 0 or any(
            u.exercised for u in self.handlers if u.handler.kind is HandlerKind.FUNCTION)

    def summary(self, kind: HandlerKind) -> KindSummary:
        of_kind = [u for u in self.handlers if u.handler.kind is kind]
        return KindSummary(len(of_kind), sum(1 for u in of_kind if u.exercised))

    def shown(self) -> list[HandlerUsage]:
        return [u for u in self.handlers
                if u.handler.kind is HandlerKind.ROUTE or self.functions_measured]

    def to_rows(self) -> Rows:
        rows = [_handler_row(u) for u in self.shown()]
        rows.sort(key=lambda r: (r["status"] != EXERCISED, r["file"], r["line"], r["route"],
                                 r["method"]))
        rows += [{"status": UNKNOWN, "kind": u.kind.value, "method": u.method or None,
                  "route": u.key if u.kind is HandlerKind.ROUTE else None,
                  "function": u.key if u.kind is HandlerKind.FUNCTION else None, "file": None,
                  "line": None, "service": u.service, "calls": u.calls, "errors": u.errors,
                  "p95_ms": u.p95_ms} for u in self.unknown]
        return Rows(f"Handler coverage of {self.scan.root}", COLUMNS, rows, self.notes(),
                    extra={"summary": self.summary_dict()})

    def notes(self) -> list[str]:
        routes, functions = self.summary(HandlerKind.ROUTE), self.summary(HandlerKind.FUNCTION)
        notes = [f"routes: {routes.exercised:,} of {routes.handlers:,} exercised"
                 + (f" ({routes.percent:.1f}%)" if routes.percent is not None else "")]
        if self.functions_measured:
            notes.append(f"functions: {functions.exercised:,} of {functions.handlers:,} exercised"
                         + (f" ({functions.percent:.1f}%)" if functions.percent is not None else ""))
        else:
            notes.append(f"functions: not measured ({functions.handlers:,} found): no span in the "
                         "window carries code.function.name / code.function or names a function")
        if self.unknown:
            calls = sum(u.calls for u in self.unknown)
            notes.append(f"{calls:,} spans name {len(self.unknown):,} routes/functions that match "
                         "no handler in the code")
        if self.scan.unparsable:
            n = len(self.scan.unparsable)
            notes.append(f"{n} Python file{'s' if n != 1 else ''} could not be parsed: "
                         + ", ".join(self.scan.unparsable[:5]))
        return notes

    def summary_dict(self) -> dict[str, Any]:
        def part(s: KindSummary) -> dict[str, Any]:
            return {"handlers": s.handlers, "exercised": s.exercised, "percent": s.percent}
        return {"routes": part(self.summary(HandlerKind.ROUTE)),
                "functions": part(self.summary(HandlerKind.FUNCTION)),
                "functions_measured": self.functions_measured, "files": self.scan.files,
                "unparsable": self.scan.unparsable, "spans": self.spans,
                "unknown_spans": sum(u.calls for u in self.unknown),
                "handlers": [{**asdict(u.handler), "template": u.template} for u in self.shown()]}


def _handler_row(u: HandlerUsage) -> dict[str, Any]:
    h = u.handler
    return {"status": EXERCISED if u.exercised else NEVER, "kind": h.kind.value,
            "method": ",".join(h.methods) if h.methods else ("*" if h.route else None),
            "route": h.route or None, "function": h.function or None, "file": h.file,
            "line": h.line, "service": ",".join(u.services) or None, "calls": u.calls,
            "errors": u.errors, "p95_ms": u.p95_ms}


def coverage(store: Store, scope: Scope, scan: CodeScan) -> CoverageReport:
    """Match the spans in `scope` to the handlers `scan` found."""
    bound = [{"hid": i, "route": h.route, "methods": list(h.methods), "func": h.function}
             for i, h in enumerate(scan.handlers)]
    if not bound:  # still count the spans, and report them all as unknown
        bound = [{"hid": -1, "route": "", "methods": ["-"], "func": ""}]
    templates = coverage_sql.handler_routes(store.con, bound)
    stats: dict[int, tuple[int, int, float | None, tuple[str, ...]]] = {}
    unknown: list[UnknownUsage] = []
    spans = code_spans = 0
    for part, hid, svc, kind, method, key, calls, errors, p95, services in coverage_sql.fetch(
            store.con, scope, bound):
        if part == "handler":
            stats[int(hid)] = (int(calls), int(errors), p95, tuple(services))
        elif part == "unknown":
            unknown.append(UnknownUsage(svc, HandlerKind(kind), method, key, int(calls),
                                        int(errors), p95))
        else:
            spans, code_spans = int(calls), int(errors)
    usages = [HandlerUsage(h, templates.get(i, ""), *stats.get(i, (0, 0, None, ())))
              for i, h in enumerate(scan.handlers)]
    unknown.sort(key=lambda u: (-u.calls, u.service, u.kind, u.key, u.method))
    return CoverageReport(scan, usages, unknown, spans, code_spans)
