"""Whole spans of one trace, and a search for traces: what every trace view draws from.

`load_trace` returns every stored column of a trace's spans (start order, duplicates kept so
a view can show them), `search_traces` finds traces the way Jaeger's search does: one span must
match all the filters, and the result is one summary per trace, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telltale.store import Store
from telltale.store.trace_detail_sql import TRACE_SPANS, TRACES_SPANS, search_sql


@dataclass(frozen=True)
class SpanEvent:
    timestamp_ns: int
    name: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class SpanLink:
    trace_id: str
    span_id: str
    trace_state: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class SpanDetail:
    trace_id: str
    span_id: str
    parent_span_id: str  # '' for a root
    name: str
    kind: str  # as stored: 'Server', 'Client', ... (or 'SPAN_KIND_SERVER')
    service: str
    start_ns: int
    duration_ns: int
    status_code: str
    status_message: str
    error: bool
    trace_state: str = ""
    scope_name: str = ""
    scope_version: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    resource: dict[str, str] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    links: tuple[SpanLink, ...] = ()

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns


@dataclass(frozen=True)
class TraceDetail:
    trace_id: str
    spans: list[SpanDetail]  # by start time, then span id

    @property
    def start_ns(self) -> int:
        return min(s.start_ns for s in self.spans)

    @property
    def end_ns(self) -> int:
        return max(s.end_ns for s in self.spans)

    @property
    def roots(self) -> list[SpanDetail]:
        """Spans without a parent in the trace (true roots first, then orphans)."""
        ids = {s.span_id for s in self.spans}
        return sorted((s for s in self.spans if s.parent_span_id not in ids),
                      key=lambda s: (s.parent_span_id != "", s.start_ns, s.span_id))

    def children(self) -> dict[str, list[SpanDetail]]:
        out: dict[str, list[SpanDetail]] = {}
        for s in self.spans:
            out.setdefault(s.parent_span_id, []).append(s)
        return out


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    start_ns: int
    duration_ns: int
    spans: int
    errors: int
    root_service: str
    root_operation: str
    services: int


def _attrs(value: Any) -> dict[str, str]:
    return dict(value) if value else {}


def _span(r: tuple[Any, ...]) -> SpanDetail:
    return SpanDetail(
        trace_id=r[0], span_id=r[1], parent_span_id=r[2], trace_state=r[3] or "",
        name=r[4], kind=r[5], service=r[6], resource=_attrs(r[7]), scope_name=r[8] or "",
        scope_version=r[9] or "", attributes=_attrs(r[10]), start_ns=int(r[11]),
        duration_ns=int(r[12]), status_code=r[13], status_message=r[14] or "",
        events=tuple(SpanEvent(int(e["Timestamp"]), e["Name"] or "", _attrs(e["Attributes"]))
                     for e in (r[15] or [])),
        links=tuple(SpanLink(lk["TraceId"], lk["SpanId"], lk["TraceState"] or "",
                             _attrs(lk["Attributes"])) for lk in (r[16] or [])),
        error=bool(r[17]))


def normalize_trace_id(text: str) -> str | None:
    """A trace id as stored (32 lowercase hex digits; shorter ids zero-padded, as Jaeger reads a
    64-bit id), or None when `text` is not up to 32 hex digits."""
    tid = text.strip().lower()
    if not tid or len(tid) > 32 or any(c not in "0123456789abcdef" for c in tid):
        return None
    return tid.rjust(32, "0")


def load_trace(store: Store, trace_id: str) -> TraceDetail | None:
    """The trace's spans, or None when no span of it is stored. Ids are lowercase hex."""
    trace_id = trace_id.strip().lower()
    rows = store.con.execute(TRACE_SPANS, {"trace": trace_id}).fetchall()
    if not rows:
        return None
    return TraceDetail(trace_id, [_span(r) for r in rows])


def load_traces(store: Store, trace_ids: list[str]) -> dict[str, TraceDetail]:
    """Several traces in one scan (what `load_trace` gives for each), keyed by id; ids with no
    stored span are absent."""
    ids = sorted({t.strip().lower() for t in trace_ids})
    out: dict[str, TraceDetail] = {}
    for r in store.con.execute(TRACES_SPANS, {"traces": ids}).fetchall():
        out.setdefault(r[0], TraceDetail(r[0], [])).spans.append(_span(r))
    return out


def search_traces(store: Store, *, service: str | None = None, operation: str | None = None,
                  since: int | None = None, until: int | None = None,
                  min_duration_ns: int | None = None, max_duration_ns: int | None = None,
                  errors_only: bool = False, attributes: dict[str, str] | None = None,
                  limit: int = 20) -> list[TraceSummary]:
    sql, params = search_sql(service=service, operation=operation, since=since, until=until,
                             min_duration=min_duration_ns, max_duration=max_duration_ns,
                             errors_only=errors_only, attributes=attributes or {}, limit=limit)
    return [TraceSummary(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5], r[6], int(r[7]))
            for r in store.con.execute(sql, params).fetchall()]
