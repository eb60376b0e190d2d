"""The staging model: what every decoder produces before validation.

Decoders turn any input format into Arrow tables with these schemas (or, for OTLP/JSON traces,
into the same columns directly in the engine). Staging columns are *raw*: ids keep whatever case
and shape they arrived in, timestamps may be missing. The store's single write path validates
staged rows in SQL, stores the good ones and quarantines the rest with a reason, so every format
shares one set of validation rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc

from telltale.model import MetricType, QuarantineReason, Signal

ATTRS = pa.map_(pa.string(), pa.string())

# Position of the record in its source ("line 12", "line 12 span 3", "row 7"), its size, and
# optionally a defect the decoder already found (a QuarantineReason value) with the raw text to
# keep for it; validation quarantines rows with a Defect before checking anything else.
_POS = [
    pa.field("Pos", pa.string()),
    pa.field("RecordBytes", pa.int64()),
    pa.field("Defect", pa.string()),
    pa.field("Raw", pa.string()),
]

EVENT = pa.struct(
    [pa.field("Timestamp", pa.int64()), pa.field("Name", pa.string()), pa.field("Attributes", ATTRS)]
)
LINK = pa.struct(
    [
        pa.field("TraceId", pa.string()),
        pa.field("SpanId", pa.string()),
        pa.field("TraceState", pa.string()),
        pa.field("Attributes", ATTRS),
    ]
)

SPANS = pa.schema(
    [
        *_POS,
        pa.field("StartNs", pa.int64()),
        pa.field("EndNs", pa.int64()),
        pa.field("TraceId", pa.string()),
        pa.field("SpanId", pa.string()),
        pa.field("ParentSpanId", pa.string()),
        pa.field("TraceState", pa.string()),
        pa.field("SpanName", pa.string()),
        pa.field("SpanKind", pa.string()),
        pa.field("ServiceName", pa.string()),
        pa.field("ResourceAttributes", ATTRS),
        pa.field("ScopeName", pa.string()),
        pa.field("ScopeVersion", pa.string()),
        pa.field("SpanAttributes", ATTRS),
        pa.field("StatusCode", pa.string()),
        pa.field("StatusMessage", pa.string()),
        pa.field("Events", pa.list_(EVENT)),
        pa.field("Links", pa.list_(LINK)),
    ]
)

LOGS = pa.schema(
    [
        *_POS,
        pa.field("Timestamp", pa.int64()),
        pa.field("ObservedTimestamp", pa.int64()),
        pa.field("TraceId", pa.string()),
        pa.field("SpanId", pa.string()),
        pa.field("TraceFlags", pa.int64()),
        pa.field("SeverityText", pa.string()),
        pa.field("SeverityNumber", pa.int64()),
        pa.field("ServiceName", pa.string()),
        pa.field("Body", pa.string()),
        pa.field("ResourceSchemaUrl", pa.string()),
        pa.field("ResourceAttributes", ATTRS),
        pa.field("ScopeSchemaUrl", pa.string()),
        pa.field("ScopeName", pa.string()),
        pa.field("ScopeVersion", pa.string()),
        pa.field("ScopeAttributes", ATTRS),
        pa.field("LogAttributes", ATTRS),
        pa.field("EventName", pa.string()),
    ]
)

_METRIC_COMMON = [
    *_POS,
    pa.field("ResourceAttributes", ATTRS),
    pa.field("ResourceSchemaUrl", pa.string()),
    pa.field("ScopeName", pa.string()),
    pa.field("ScopeVersion", pa.string()),
    pa.field("ScopeAttributes", ATTRS),
    pa.field("ScopeSchemaUrl", pa.string()),
    pa.field("ServiceName", pa.string()),
    pa.field("MetricName", pa.string()),
    pa.field("MetricDescription", pa.string()),
    pa.field("MetricUnit", pa.string()),
    pa.field("Attributes", ATTRS),
    pa.field("StartTimeUnix", pa.int64()),
    pa.field("TimeUnix", pa.int64()),
    pa.field("Flags", pa.int64()),
]
METRIC_COMMON_NAMES = frozenset(f.name for f in _METRIC_COMMON)
_TEMPORALITY = pa.field("AggregationTemporality", pa.int64())
_COUNT_SUM = [pa.field("Count", pa.uint64()), pa.field("Sum", pa.float64())]
_MIN_MAX = [pa.field("Min", pa.float64()), pa.field("Max", pa.float64())]

METRICS: dict[MetricType, pa.Schema] = {
    MetricType.GAUGE: pa.schema([*_METRIC_COMMON, pa.field("Value", pa.float64())]),
    MetricType.SUM: pa.schema(
        [
            *_METRIC_COMMON,
            pa.field("Value", pa.float64()),
            _TEMPORALITY,
            pa.field("IsMonotonic", pa.bool_()),
        ]
    ),
    MetricType.HISTOGRAM: pa.schema(
        [
            *_METRIC_COMMON,
            *_COUNT_SUM,
            pa.field("BucketCounts", pa.list_(pa.uint64())),
            pa.field("ExplicitBounds", pa.list_(pa.float64())),
            *_MIN_MAX,
            _TEMPORALITY,
        ]
    ),
    MetricType.EXPONENTIAL_HISTOGRAM: pa.schema(
        [
            *_METRIC_COMMON,
            *_COUNT_SUM,
            pa.field("Scale", pa.int64()),
            pa.field("ZeroCount", pa.uint64()),
            pa.field("PositiveOffset", pa.int64()),
            pa.field("PositiveBucketCounts", pa.list_(pa.uint64())),
            pa.field("NegativeOffset", pa.int64()),
            pa.field("NegativeBucketCounts", pa.list_(pa.uint64())),
            *_MIN_MAX,
            _TEMPORALITY,
        ]
    ),
    MetricType.SUMMARY: pa.schema(
        [
            *_METRIC_COMMON,
            *_COUNT_SUM,
            pa.field(
                "ValueAtQuantiles",
                pa.list_(
                    pa.struct(
                        [pa.field("Quantile", pa.float64()), pa.field("Value", pa.float64())]
                    )
                ),
            ),
        ]
    ),
}


@dataclass(frozen=True)
class Reject:
    """A record refused before it could be staged (unparsable line, wrong shape...).

    `part` says which part of a grouped commit it belongs to (see `Decoded.extend`)."""

    signal: Signal
    position: str
    reason: QuarantineReason
    raw: str
    detail: str = ""
    part: int = 0


# Staged rows may carry which part of a grouped commit they came from (the receiver commits many
# requests in one transaction, each its own batch); a table without the column is all part 0.
PART = "Part"


@dataclass(frozen=True)
class ProtoTraces:
    """OTLP protobuf trace requests as Arrow (decoded by ptars), for the engine to stage.

    `spans` has one row per span with its nested protobuf fields as structs plus `Part`, `Pos`
    prefix, `Idx` (span number within its message) and `Res` (row in `resources`);
    `resources` holds each resource's attribute list once, however many spans share it."""

    spans: pa.Table
    resources: pa.Table

    @property
    def has_events(self) -> bool:
        return bool(pc.sum(pc.list_value_length(self.spans["events"])).as_py())

    @property
    def has_links(self) -> bool:
        return bool(pc.sum(pc.list_value_length(self.spans["links"])).as_py())


@dataclass
class Decoded:
    """Everything one source decoded into: staged tables plus records refused while decoding.

    `json_trace_lines` / `json_log_lines` carry OTLP/JSON request lines (columns `LineNo`,
    `Line`, optionally `Part`) and `proto_traces` OTLP protobuf requests as Arrow; the store
    decodes both into staged rows inside the engine, many times faster than Python.
    """

    spans: list[pa.Table] = field(default_factory=list)
    logs: list[pa.Table] = field(default_factory=list)
    metrics: dict[MetricType, list[pa.Table]] = field(default_factory=dict)
    json_trace_lines: list[pa.Table] = field(default_factory=list)
    json_log_lines: list[pa.Table] = field(default_factory=list)
    proto_traces: list[ProtoTraces] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    def extend(self, other: Decoded, part: int | None = None) -> None:
        """Add another decode's output; with `part`, tag all of it as that part."""
        def tag(tables: list[pa.Table]) -> list[pa.Table]:
            return tables if part is None else [with_part(t, part) for t in tables]
        self.spans += tag(other.spans)
        self.logs += tag(other.logs)
        for kind, tables in other.metrics.items():
            self.metrics.setdefault(kind, []).extend(tag(tables))
        self.json_trace_lines += tag(other.json_trace_lines)
        self.json_log_lines += tag(other.json_log_lines)
        if part is None:
            self.proto_traces += other.proto_traces
        else:
            self.proto_traces += [ProtoTraces(with_part(p.spans, part), p.resources)
                                  for p in other.proto_traces]
        self.rejects += (other.rejects if part is None else
                         [replace(r, part=part) for r in other.rejects])


def with_part(tbl: pa.Table, part: int) -> pa.Table:
    column = pa.array([part] * tbl.num_rows, pa.int32())
    if PART in tbl.column_names:
        return tbl.set_column(tbl.column_names.index(PART), PART, column)
    return tbl.append_column(PART, column)


def table(schema: pa.Schema, columns: dict[str, list[object]]) -> pa.Table:
    """Build a staging table from python columns; missing columns become nulls."""
    n = len(next(iter(columns.values()))) if columns else 0
    arrays = [
        pa.array(columns[f.name], type=f.type) if f.name in columns else pa.nulls(n, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)
