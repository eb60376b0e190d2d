"""Validation rules for staged records, as SQL: one rule set for every input format.

Each staged row's `Defect` is set to its reason (NULL = valid) by one UPDATE, which touches a
single column instead of copying the staged rows. Valid rows are normalised (lower-case
ids, all-zero parent = root, Duration = end - start) and stored; the rest go to quarantine with
the staged row as JSON, so nothing is lost. OTLP protobuf spans apply the same rules while they
are staged (`span_defect`, store/otlp_proto.py): only their rejects reach the staging table.
Bounds are bound parameters, never interpolated.
`$batch + Part` is each row's batch: a grouped commit (the receiver's) stores many parts, each
its own batch, in one transaction.
"""

from __future__ import annotations

from telltale.model import MetricType
from telltale.model import QuarantineReason as Q

_HEX32 = "'^[0-9a-f]{32}$'"
_HEX16 = "'^[0-9a-f]{16}$'"
ZERO_PARENT = "0000000000000000"


def _ts_bad(col: str) -> str:
    # $min_ts / $max_ts / $max_bytes are bound per call.
    return f"({col} IS NULL OR {col} < $min_ts OR {col} > $max_ts)"


def _is_hex(expr: str, digits: int, hex_ids: bool) -> str:
    """Is `expr` an id of `digits` hex digits? Ids made by `lower(hex(bytes))` (protobuf) are
    hex by construction, so only their length needs checking (a regex per id cost 5 % of a
    protobuf file's ingest)."""
    if hex_ids:
        return f"length({expr}) = {digits}"
    return f"regexp_matches(lower({expr}), {_HEX32 if digits == 32 else _HEX16})"


def _span_rules(s: str, hex_ids: bool = False) -> str:
    """The WHEN clauses naming a staged span's first defect (`s` is its row's alias)."""
    return f"""
    WHEN coalesce({s}.TraceId, '') = '' THEN '{Q.MISSING_TRACE_ID}'
    WHEN NOT {_is_hex(f"{s}.TraceId", 32, hex_ids)} OR ltrim({s}.TraceId, '0') = ''
        THEN '{Q.BAD_TRACE_ID}'
    WHEN coalesce({s}.SpanId, '') = '' THEN '{Q.MISSING_SPAN_ID}'
    WHEN NOT {_is_hex(f"{s}.SpanId", 16, hex_ids)} OR ltrim({s}.SpanId, '0') = ''
        THEN '{Q.BAD_SPAN_ID}'
    WHEN coalesce({s}.ParentSpanId, '') <> ''
        AND NOT {_is_hex(f"{s}.ParentSpanId", 16, hex_ids)} THEN '{Q.BAD_PARENT_ID}'
    WHEN {_ts_bad(f"{s}.StartNs")} OR {s}.EndNs IS NULL THEN '{Q.BAD_TIMESTAMP}'
    WHEN {s}.EndNs < {s}.StartNs THEN '{Q.NEGATIVE_DURATION}'
    WHEN coalesce({s}.SpanName, '') = '' THEN '{Q.MISSING_NAME}'
    WHEN {s}.RecordBytes > $max_bytes THEN '{Q.OVERSIZE}'"""


def span_defect(s: str, hex_ids: bool = False) -> str:
    """A staged span's defect (NULL = valid), for paths that validate while they stage;
    `hex_ids`: the ids are lower-case hex by construction (see `_is_hex`)."""
    return f"CASE {_span_rules(s, hex_ids)}\nEND"


SPAN_REASON = f"""
UPDATE stg_spans s SET Defect = CASE
    WHEN s.Defect IS NOT NULL THEN s.Defect{_span_rules("s")}
END
"""



def span_columns(lowered: bool = False) -> str:
    """A valid staged span → its otel_traces row ($batch + Part: see the module docstring);
    `lowered`: the ids are lower-case already."""
    def low(expr: str) -> str:
        return expr if lowered else f"lower({expr})"
    return f"""StartNs, {low("TraceId")}, {low("SpanId")},
    CASE WHEN {low("coalesce(ParentSpanId, '')")} = '{ZERO_PARENT}' THEN ''
         ELSE {low("coalesce(ParentSpanId, '')")} END,
    coalesce(TraceState, ''), SpanName, coalesce(SpanKind, 'Unspecified'),
    coalesce(ServiceName, ''), coalesce(ResourceAttributes, MAP()), coalesce(ScopeName, ''),
    coalesce(ScopeVersion, ''), coalesce(SpanAttributes, MAP()), EndNs - StartNs,
    coalesce(StatusCode, 'Unset'), coalesce(StatusMessage, ''), coalesce(Events, []),
    coalesce(Links, []), $batch + coalesce(Part, 0)"""


SPAN_COLUMNS = span_columns()

SPAN_STORE = f"""
INSERT INTO otel_traces
SELECT {SPAN_COLUMNS}
FROM stg_spans WHERE Defect IS NULL
"""

LOG_REASON = f"""
UPDATE stg_logs s SET Defect = CASE
    WHEN s.Defect IS NOT NULL THEN s.Defect
    WHEN coalesce(s.TraceId, '') <> '' AND
        NOT regexp_matches(lower(s.TraceId), {_HEX32}) THEN '{Q.BAD_TRACE_ID}'
    WHEN coalesce(s.SpanId, '') <> '' AND
        NOT regexp_matches(lower(s.SpanId), {_HEX16}) THEN '{Q.BAD_SPAN_ID}'
    WHEN {_ts_bad("coalesce(nullif(s.Timestamp, 0), s.ObservedTimestamp)")} THEN '{Q.BAD_TIMESTAMP}'
    WHEN s.RecordBytes > $max_bytes THEN '{Q.OVERSIZE}'
END
"""

LOG_STORE = """
INSERT INTO otel_logs
SELECT coalesce(nullif(Timestamp, 0), ObservedTimestamp), coalesce(ObservedTimestamp, 0),
    lower(coalesce(TraceId, '')), lower(coalesce(SpanId, '')), coalesce(TraceFlags, 0) & 255,
    coalesce(SeverityText, ''), coalesce(SeverityNumber, 0), coalesce(ServiceName, ''),
    coalesce(Body, ''), coalesce(ResourceSchemaUrl, ''), coalesce(ResourceAttributes, MAP()),
    coalesce(ScopeSchemaUrl, ''), coalesce(ScopeName, ''), coalesce(ScopeVersion, ''),
    coalesce(ScopeAttributes, MAP()), coalesce(LogAttributes, MAP()), coalesce(EventName, ''),
    $batch + coalesce(Part, 0)
FROM stg_logs WHERE Defect IS NULL
"""


def metric_reason(kind: MetricType) -> str:
    return f"""
UPDATE stg_metrics_{kind} s SET Defect = CASE
    WHEN s.Defect IS NOT NULL THEN s.Defect
    WHEN coalesce(s.MetricName, '') = '' THEN '{Q.MISSING_NAME}'
    WHEN {_ts_bad("s.TimeUnix")} THEN '{Q.BAD_TIMESTAMP}'
    WHEN s.RecordBytes > $max_bytes THEN '{Q.OVERSIZE}'
END
"""


def metric_store(kind: MetricType, value_columns: list[str]) -> str:
    values = ", ".join(value_columns)
    return f"""
INSERT INTO otel_metrics_{kind}
SELECT coalesce(ResourceAttributes, MAP()), ResourceSchemaUrl, ScopeName, ScopeVersion,
    coalesce(ScopeAttributes, MAP()), ScopeSchemaUrl, coalesce(ServiceName, ''), MetricName,
    MetricDescription, MetricUnit, coalesce(Attributes, MAP()), StartTimeUnix, TimeUnix, Flags,
    {values}, $batch + coalesce(Part, 0)
FROM stg_metrics_{kind} WHERE Defect IS NULL
"""


def quarantine_rows(check_table: str, signal: str, time_expr: str) -> str:
    """Move rejected staged rows to quarantine, keeping the whole staged record as JSON.

    `Timestamp` is the record's own time when it has a plausible one, so quality can be
    bucketed by when things happened, not when they were ingested.
    """
    return f"""
INSERT INTO telltale_quarantine
SELECT $batch + coalesce(Part, 0), '{signal}', Pos, Defect, NULL,
    coalesce(Raw, to_json(c)::VARCHAR),
    CASE WHEN {time_expr} BETWEEN $min_ts AND $max_ts THEN {time_expr} END
FROM {check_table} c WHERE Defect IS NOT NULL
"""


def reason_counts(check_table: str) -> str:
    """(part, reason or NULL for valid, rows): a grouped commit reports each part apart."""
    return f"SELECT coalesce(Part, 0), Defect, count(*) FROM {check_table} GROUP BY ALL"
