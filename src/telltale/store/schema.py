"""DDL and numbered migrations.

Core tables follow the OpenTelemetry Collector ClickHouse exporter's column names and meanings,
so analyses written against them also run on a Collector-fed ClickHouse. Differences that DuckDB
forces or that telltale adds:
- `Timestamp`/`Duration`/`TimeUnix`... are BIGINT nanoseconds (ClickHouse: DateTime64(9)/UInt64).
- Nested `Events.*` / `Links.*` / `ValueAtQuantiles.*` columns are one LIST(STRUCT) column each.
- `BatchId` ties each row to its ingest batch (source, format) for per-source quality.
- Exemplars are not stored: no analysis reads them, and they dominate metric row size.
"""

from __future__ import annotations

from telltale.store import log_templates_sql, span_index_sql

ATTRS = "MAP(VARCHAR, VARCHAR)"

_TRACES = f"""
CREATE TABLE otel_traces (
    Timestamp BIGINT NOT NULL,
    TraceId VARCHAR NOT NULL,
    SpanId VARCHAR NOT NULL,
    ParentSpanId VARCHAR NOT NULL,
    TraceState VARCHAR,
    SpanName VARCHAR NOT NULL,
    SpanKind VARCHAR NOT NULL,
    ServiceName VARCHAR NOT NULL,
    ResourceAttributes {ATTRS},
    ScopeName VARCHAR,
    ScopeVersion VARCHAR,
    SpanAttributes {ATTRS},
    Duration BIGINT NOT NULL,
    StatusCode VARCHAR NOT NULL,
    StatusMessage VARCHAR,
    Events STRUCT(Timestamp BIGINT, Name VARCHAR, Attributes {ATTRS})[],
    Links STRUCT(TraceId VARCHAR, SpanId VARCHAR, TraceState VARCHAR, Attributes {ATTRS})[],
    BatchId INTEGER NOT NULL
)"""

_LOGS = f"""
CREATE TABLE otel_logs (
    Timestamp BIGINT NOT NULL,
    ObservedTimestamp BIGINT,
    TraceId VARCHAR NOT NULL,
    SpanId VARCHAR NOT NULL,
    TraceFlags INTEGER,
    SeverityText VARCHAR,
    SeverityNumber INTEGER,
    ServiceName VARCHAR NOT NULL,
    Body VARCHAR,
    ResourceSchemaUrl VARCHAR,
    ResourceAttributes {ATTRS},
    ScopeSchemaUrl VARCHAR,
    ScopeName VARCHAR,
    ScopeVersion VARCHAR,
    ScopeAttributes {ATTRS},
    LogAttributes {ATTRS},
    EventName VARCHAR,
    BatchId INTEGER NOT NULL
)"""

METRIC_COMMON = f"""
    ResourceAttributes {ATTRS},
    ResourceSchemaUrl VARCHAR,
    ScopeName VARCHAR,
    ScopeVersion VARCHAR,
    ScopeAttributes {ATTRS},
    ScopeSchemaUrl VARCHAR,
    ServiceName VARCHAR NOT NULL,
    MetricName VARCHAR NOT NULL,
    MetricDescription VARCHAR,
    MetricUnit VARCHAR,
    Attributes {ATTRS},
    StartTimeUnix BIGINT,
    TimeUnix BIGINT NOT NULL,
    Flags INTEGER,
"""

_METRIC_TABLES = {
    "gauge": "Value DOUBLE,",
    "sum": "Value DOUBLE, AggregationTemporality INTEGER, IsMonotonic BOOLEAN,",
    "histogram": "Count UBIGINT, Sum DOUBLE, BucketCounts UBIGINT[], ExplicitBounds DOUBLE[],"
    " Min DOUBLE, Max DOUBLE, AggregationTemporality INTEGER,",
    "exponential_histogram": "Count UBIGINT, Sum DOUBLE, Scale INTEGER, ZeroCount UBIGINT,"
    " PositiveOffset INTEGER, PositiveBucketCounts UBIGINT[], NegativeOffset INTEGER,"
    " NegativeBucketCounts UBIGINT[], Min DOUBLE, Max DOUBLE, AggregationTemporality INTEGER,",
    "summary": "Count UBIGINT, Sum DOUBLE, ValueAtQuantiles STRUCT(Quantile DOUBLE, Value DOUBLE)[],",
}

_BATCHES = """
CREATE TABLE telltale_ingest_batches (
    BatchId INTEGER PRIMARY KEY,
    Source VARCHAR NOT NULL,
    Format VARCHAR NOT NULL,
    ContentHash VARCHAR NOT NULL UNIQUE,
    IngestedAt BIGINT NOT NULL,
    RecordsRead BIGINT NOT NULL,
    Stored BIGINT NOT NULL,
    Quarantined BIGINT NOT NULL
)"""

_QUARANTINE = """
CREATE TABLE telltale_quarantine (
    BatchId INTEGER NOT NULL,
    Signal VARCHAR NOT NULL,
    Position VARCHAR NOT NULL,
    Reason VARCHAR NOT NULL,
    Detail VARCHAR,
    Raw VARCHAR,
    Timestamp BIGINT  -- the record's own time when readable, else NULL
)"""

# Each migration is applied once, in order, inside one transaction with its version row.
MIGRATIONS: list[list[str]] = [
    [
        _TRACES,
        _LOGS,
        *[
            f"CREATE TABLE otel_metrics_{name} ({METRIC_COMMON} {cols} BatchId INTEGER NOT NULL)"
            for name, cols in _METRIC_TABLES.items()
        ],
        _BATCHES,
        _QUARANTINE,
    ],
    log_templates_sql.MIGRATION,  # 2: log templates and each log record's template
    span_index_sql.MIGRATION,  # 3: the span index the dependency graph reads, filled
]

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS telltale_schema_version (
    Version INTEGER PRIMARY KEY,
    AppliedAt BIGINT NOT NULL
)"""

CORE_TABLES = ["otel_traces", "otel_logs", *[f"otel_metrics_{n}" for n in _METRIC_TABLES]]
