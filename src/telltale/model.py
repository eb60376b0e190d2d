"""The small typed vocabulary every pipeline stage speaks: signals, kinds, states, reasons."""

from __future__ import annotations

from enum import StrEnum


class Signal(StrEnum):
    TRACES = "traces"
    LOGS = "logs"
    METRICS = "metrics"


class SpanKind(StrEnum):
    """Stored spelling follows the Collector ClickHouse exporter (`Server`, not `SPAN_KIND_SERVER`)."""

    UNSPECIFIED = "Unspecified"
    INTERNAL = "Internal"
    SERVER = "Server"
    CLIENT = "Client"
    PRODUCER = "Producer"
    CONSUMER = "Consumer"

    @classmethod
    def from_otlp(cls, value: int | str | None) -> SpanKind:
        """Accept OTLP enum integers, OTLP enum names and exporter spellings."""
        if value is None or value == "":
            return cls.UNSPECIFIED
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return _KIND_BY_NUMBER.get(int(value), cls.UNSPECIFIED)
        name = value.upper().removeprefix("SPAN_KIND_")
        for member in cls:
            if member.name == name:
                return member
        return cls.UNSPECIFIED


_KIND_BY_NUMBER = dict(enumerate(SpanKind))


class StatusCode(StrEnum):
    UNSET = "Unset"
    OK = "Ok"
    ERROR = "Error"

    @classmethod
    def from_otlp(cls, value: int | str | None) -> StatusCode:
        if value is None or value == "":
            return cls.UNSET
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return _STATUS_BY_NUMBER.get(int(value), cls.UNSET)
        name = value.upper().removeprefix("STATUS_CODE_")
        for member in cls:
            if member.name == name:
                return member
        return cls.UNSET


_STATUS_BY_NUMBER = dict(enumerate(StatusCode))


class MetricType(StrEnum):
    """One table per metric type, as in the exporter (`otel_metrics_<type>`)."""

    GAUGE = "gauge"
    SUM = "sum"
    HISTOGRAM = "histogram"
    EXPONENTIAL_HISTOGRAM = "exponential_histogram"
    SUMMARY = "summary"


class QuarantineReason(StrEnum):
    """Why a record was not stored. Every rejected input record carries exactly one."""

    UNPARSABLE = "unparsable"  # line/document is not valid for its format
    BAD_ENCODING = "bad_encoding"  # not UTF-8
    BAD_SHAPE = "bad_shape"  # valid JSON/CSV, but not the expected structure
    MISSING_TRACE_ID = "missing_trace_id"
    BAD_TRACE_ID = "bad_trace_id"
    MISSING_SPAN_ID = "missing_span_id"
    BAD_SPAN_ID = "bad_span_id"
    BAD_PARENT_ID = "bad_parent_id"
    BAD_TIMESTAMP = "bad_timestamp"
    NEGATIVE_DURATION = "negative_duration"
    MISSING_NAME = "missing_name"
    OVERSIZE = "oversize"


class QualityFlag(StrEnum):
    """Stored-but-flagged conditions, derived from the store at query time (never dropped)."""

    ORPHAN = "orphan"  # parent span id never seen in the trace
    DUPLICATE = "duplicate"  # (trace id, span id) stored more than once
    CLOCK_SKEW = "clock_skew"  # child starts before or ends after its parent
    NO_ROOT = "no_root"  # the span's trace has no root span


class Format(StrEnum):
    """Input formats `telltale ingest` understands (`auto` detects one of the others)."""

    AUTO = "auto"
    OTLP_JSON = "otlp-json"  # one request per file, or JSON lines (Collector file exporter)
    OTLP_PROTO = "otlp-proto"  # Export*ServiceRequest, one per file or length-delimited
    JAEGER_JSON = "jaeger-json"  # Jaeger UI download: {"data": [{"traceID", "spans", ...}]}
    ZIPKIN_JSON = "zipkin-json"  # Zipkin v2: [{"traceId", "id", "timestamp" (µs), ...}]
    CSV_SPANS = "csv-spans"  # one span per row, with a column mapping
    EVENTS_JSONL = "events-jsonl"  # generic JSON-lines events, with a field mapping
    RECORDER_JSONL = "recorder-jsonl"  # telltale.recorder spool segments
    GITHUB_ACTIONS = "github-actions"  # workflow runs/jobs: REST API, `gh --json`, webhooks
    CI_JSONL = "ci-jsonl"  # generic CI runs/jobs/steps, one per line (docs/ci.md)
    LOG_TEXT = "log"  # plain-text logs (multi-line records folded), or --pattern
    LOG_JSONL = "log-jsonl"  # JSON-lines logs (time/level/message fields found by name)
    SYSLOG = "syslog"  # RFC 3164 / RFC 5424 lines
    NEZHA_LOGS = "nezha-logs"  # Nezha's container-log CSVs (TraceID/SpanID columns)
    NEZHA_METRICS = "nezha-metrics"  # Nezha's per-pod / per-service metric CSVs → gauges
