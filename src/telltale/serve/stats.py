"""The receiver's own counters, exposed at `GET /metrics` in Prometheus text format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from telltale.model import Signal
from telltale.store import BatchReport


class ReceiverStats:
    """One registry per receiver (not the process-global one), so tests can run several."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "telltale_receiver_requests", "Export requests by transport, signal and outcome.",
            ["transport", "signal", "outcome"], registry=self.registry)
        self.records = Counter(
            "telltale_receiver_records", "Records received, by signal and what became of them "
            "(stored, or the quarantine reason).", ["signal", "outcome"], registry=self.registry)
        self.queue_depth = Gauge(
            "telltale_receiver_queue_depth", "Requests waiting for the committer.",
            registry=self.registry)
        self.queue_bytes = Gauge(
            "telltale_receiver_queue_bytes", "Bytes of request bodies held (queued or being read).",
            registry=self.registry)
        self.commit_seconds = Histogram(
            "telltale_receiver_commit_seconds", "Time to decode and durably commit one group.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry)

    def count_request(self, transport: str, signal: Signal, outcome: str) -> None:
        self.requests.labels(transport, signal.value, outcome).inc()

    def count_report(self, signal: Signal, report: BatchReport) -> None:
        for stored_signal, n in report.stored.items():
            self.records.labels(stored_signal.value, "stored").inc(n)
        for reason, n in report.quarantined.items():
            self.records.labels(signal.value, reason.value).inc(n)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
