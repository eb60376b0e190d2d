"""Logs ↔ traces: which span each log record was written in, and how well a store's logs link.

Records carry trace and span ids from OTLP fields, JSON fields or ids found in their text (see
normalize/log_records.py; Nezha's CSVs have columns for them). A record attaches to the span its
SpanId names when that span is stored, else to the innermost span of its own service whose time
range covers the record (a log written by a span's code without the span id). The rule is SQL in
store/log_links_sql.py, shared with compare and root cause, which count a span with an attached
error log as failing.
"""

from __future__ import annotations

from dataclasses import dataclass

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, log_links_sql


@dataclass(frozen=True)
class LinkedLog:
    """One log record of a trace and the span it attaches to."""

    time_ns: int
    severity_text: str
    severity_number: int
    service: str
    body: str
    span_id: str  # the record's own SpanId ('' when it carries none)
    attached_span_id: str | None  # None: no stored span of the trace fits
    how: str  # 'span_id', 'time' (covering span of its service) or '' (not attached)
    attributes: dict[str, str]

    @property
    def is_error(self) -> bool:
        return self.severity_number >= 17 or self.severity_text.upper() in (
            "ERROR", "FATAL", "CRITICAL")


def logs_of_trace(store: Store, trace_id: str) -> list[LinkedLog]:
    """The logs of one trace in time order, each with the span it attaches to."""
    return [LinkedLog(int(ts), str(sev or ""), int(num or 0), str(svc or ""), str(body or ""),
                      str(own or ""), None if att is None else str(att), str(how or ""),
                      dict(attrs or {}))
            for ts, sev, num, svc, body, own, att, how, attrs
            in log_links_sql.trace_logs(store.con, trace_id)]


def trace_logs_rows(trace_id: str, logs: list[LinkedLog]) -> Rows:
    rows = [{"time_ns": log.time_ns, "severity": log.severity_text, "service": log.service,
             "span": log.attached_span_id or "-", "how": log.how or "-",
             "body": log.body.splitlines()[0] if log.body else ""} for log in logs]
    notes = [] if logs else [f"no log records carry trace id {trace_id}"]
    unattached = sum(1 for log in logs if log.attached_span_id is None)
    if unattached:
        notes.append(f"{unattached:,} record(s) fit no stored span of the trace")
    return Rows(f"Logs of trace {trace_id}", ["time_ns", "severity", "service", "span", "how",
                                               "body"], rows, notes)


@dataclass(frozen=True)
class ServiceLinks:
    service: str
    logs: int
    with_trace_id: int
    with_span_id: int
    trace_stored: int  # records whose trace has stored spans
    by_span_id: int  # attached to the span their SpanId names
    by_time: int  # attached to the innermost covering span of their service

    @property
    def attached(self) -> int:
        return self.by_span_id + self.by_time


@dataclass(frozen=True)
class LinkQuality:
    scope: Scope
    services: list[ServiceLinks]

    def total(self) -> ServiceLinks:
        s = self.services
        return ServiceLinks("(all)", *(sum(getattr(x, f) for x in s) for f in (
            "logs", "with_trace_id", "with_span_id", "trace_stored", "by_span_id", "by_time")))

    def to_rows(self) -> Rows:
        def row(s: ServiceLinks) -> dict[str, object]:
            return {"service": s.service, "logs": s.logs, "with_trace_id": s.with_trace_id,
                    "pct_with_trace_id": _pct(s.with_trace_id, s.logs),
                    "trace_stored": s.trace_stored,
                    "pct_trace_stored": _pct(s.trace_stored, s.with_trace_id),
                    "attached": s.attached, "pct_attached": _pct(s.attached, s.with_trace_id),
                    "by_span_id": s.by_span_id, "by_time": s.by_time}
        rows = [row(s) for s in self.services]
        if len(self.services) > 1:
            rows.append(row(self.total()))
        notes = ["pct_trace_stored and pct_attached are shares of the records with a trace id; "
                 "attached = to the span their SpanId names (by_span_id) or, lacking it, to the "
                 "innermost span of their service covering their time (by_time)."]
        if not self.services:
            notes.insert(0, "no log records in scope")
        return Rows("Log ↔ trace links", ["service", "logs", "with_trace_id", "pct_with_trace_id",
                                          "trace_stored", "pct_trace_stored", "attached",
                                          "pct_attached", "by_span_id", "by_time"], rows, notes)


def _pct(n: int, d: int) -> float | None:
    return 100.0 * n / d if d else None


def link_quality(store: Store, scope: Scope) -> LinkQuality:
    """Per service, how many log records carry a trace id and how many of those link up."""
    return LinkQuality(scope, [ServiceLinks(str(svc), *(int(v) for v in counts))
                               for svc, *counts in log_links_sql.link_quality(store.con, scope)])
