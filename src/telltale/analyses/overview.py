"""A first look at a store: per-service traffic, errors and latency, and the attribute value
most tied to errors. The demo's "what telltale found" summary is built from this."""

from __future__ import annotations

from dataclasses import dataclass

from telltale.store import Store, overview_sql


@dataclass(frozen=True)
class ServiceSummary:
    service: str
    spans: int
    traces: int
    errors: int
    p50_ms: float
    p95_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.spans if self.spans else 0.0


@dataclass(frozen=True)
class ErrorHotspot:
    """An attribute value on which an operation's spans fail far more often than without it
    (counting errors that originate in the span, not failures propagated from below)."""

    service: str
    operation: str
    key: str
    value: str
    errors: int
    spans: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.spans if self.spans else 0.0


@dataclass(frozen=True)
class OpenSpan:
    """Work that started and never reported an end (a stuck worker, a hung job)."""

    service: str
    name: str
    trace_id: str
    span_id: str
    start_ns: int
    attributes: dict[str, str]


@dataclass(frozen=True)
class Overview:
    counts: dict[str, int]
    services: list[ServiceSummary]
    hotspots: list[ErrorHotspot]
    open_spans: list[OpenSpan]


def overview(store: Store, *, since: int = 0, until: int = 2**62, min_errors: int = 20,
             hotspots: int = 3) -> Overview:
    counts = {name: int(n) for name, n in overview_sql.signal_counts(store.con)}
    services = [
        ServiceSummary(svc, int(n), int(tr), int(err), float(p50) / 1e6, float(p95) / 1e6)
        for svc, n, tr, err, p50, p95, _first, _last in overview_sql.services(store.con, since, until)
    ]
    spots = [ErrorHotspot(svc, op, k, v, int(e), int(n)) for svc, op, k, v, e, n in
             overview_sql.error_attributes(store.con, since, until, min_errors, hotspots)]
    still_open = [OpenSpan(svc, name, tid, sid, int(ts), dict(attrs)) for svc, name, tid, sid, ts, attrs
                  in overview_sql.open_spans(store.con, since, until, 20)]
    return Overview(counts, services, spots, still_open)
