"""OTLP/JSON trace requests decoded inside DuckDB.

Request lines (one `ExportTraceServiceRequest` JSON per line) are parsed with `from_json` into
typed structs and unnested to one staged row per span, all vectorised in the engine. This path
handles the OTLP JSON mapping's quirks: ids in any hex case (validation lower-cases them), enums
as integers or names, 64-bit integers as strings or numbers, unknown fields ignored.
Attribute values are stored as strings the way the Collector's ClickHouse exporter does
(`AnyValue.AsString()`): arrays and maps as JSON, via a small Python function that only runs
for those (rare) values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from telltale.model import QuarantineReason, SpanKind, StatusCode
from telltale.normalize.anyvalue import go_json
from telltale.store import validate
from telltale.store.staging_tables import raise_where

_AV = (
    '{"stringValue":"VARCHAR","intValue":"VARCHAR","boolValue":"BOOLEAN",'
    '"doubleValue":"DOUBLE","arrayValue":"JSON","kvlistValue":"JSON","bytesValue":"VARCHAR"}'
)
_KV = '[{"key":"VARCHAR","value":%s}]' % _AV
_SPAN = (
    '{"traceId":"VARCHAR","spanId":"VARCHAR","parentSpanId":"VARCHAR","traceState":"VARCHAR",'
    '"name":"VARCHAR","kind":"VARCHAR","startTimeUnixNano":"VARCHAR","endTimeUnixNano":"VARCHAR",'
    '"attributes":%(kv)s,"status":{"code":"VARCHAR","message":"VARCHAR"},'
    '"events":[{"timeUnixNano":"VARCHAR","name":"VARCHAR","attributes":%(kv)s}],'
    '"links":[{"traceId":"VARCHAR","spanId":"VARCHAR","traceState":"VARCHAR",'
    '"attributes":%(kv)s}]}'
) % {"kv": _KV}
TRACE_REQUEST = (
    '{"resourceSpans":[{"resource":{"attributes":%s},'
    '"scopeSpans":[{"scope":{"name":"VARCHAR","version":"VARCHAR"},"spans":[%s]}]}]}'
) % (_KV, _SPAN)

UDF_NAME = "telltale_anyvalue"
FLOAT_UDF_NAME = "telltale_float"


def anyvalue_text(value: Any) -> Any:
    """Plain Python value of an OTLP JSON AnyValue (arrays and maps recursively)."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "bytesValue" in value:
        return value["bytesValue"]
    if "arrayValue" in value:
        return [anyvalue_text(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return {
            kv.get("key", ""): anyvalue_text(kv.get("value"))
            for kv in (value["kvlistValue"] or {}).get("values", [])
        }
    return None


def complex_value_udf(container: str) -> str:
    """UDF body: JSON text of `{"values": [...]}` (array or kvlist) → exporter-style JSON.

    Total: a value the mapping cannot read (wrong types, integers beyond 64 bits, absurd
    nesting) keeps its JSON text as it arrived rather than failing the whole commit."""
    try:
        parsed = orjson.loads(container)
        values = parsed.get("values", []) if isinstance(parsed, dict) else []
        if values and isinstance(values[0], dict) and "key" in values[0]:
            return go_json(anyvalue_text({"kvlistValue": parsed}))
        return go_json(anyvalue_text({"arrayValue": parsed}))
    except (ValueError, TypeError, AttributeError, LookupError, RecursionError):
        return container  # e.g. `values` an object, not a list: found by tests/test_serve_fuzz


def go_float_sql(x: str) -> str:
    """`anyvalue.go_float` of a DOUBLE in SQL for the values nearly all attributes hold (a Python
    call per value cost more than the rest of a span's conversion): integral values below 1e18
    print as integers, and between 1e-4 and 1e15 DuckDB's shortest round-trip digits are Go's
    (tests/test_anyvalue_sql.py compares them); anything else (NaN, ±Inf, tiny, huge) goes to the
    Python function."""
    return (f"CASE WHEN {x} = trunc({x}) AND abs({x}) < 1e18 THEN CAST(CAST({x} AS BIGINT) AS VARCHAR)"
            f" WHEN abs({x}) >= 1e-4 AND abs({x}) < 1e15 THEN CAST({x} AS VARCHAR)"
            f" ELSE {FLOAT_UDF_NAME}({x}) END")


def _value(v: str) -> str:
    """An AnyValue struct → its exporter string."""
    return (
        f"coalesce({v}.stringValue, {v}.intValue, CAST({v}.boolValue AS VARCHAR),"
        f" {go_float_sql(f'{v}.doubleValue')}, {v}.bytesValue,"
        f" CASE WHEN {v}.arrayValue IS NOT NULL OR {v}.kvlistValue IS NOT NULL THEN"
        f" {UDF_NAME}(CAST(coalesce({v}.arrayValue, {v}.kvlistValue) AS VARCHAR)) END, '')"
    )


def attr_entries(expr: str, value: Callable[[str], str] = _value) -> str:
    """KeyValue list → list of {k, v} (`value` renders one AnyValue struct as the exporter's
    string)."""
    return (f"list_transform(coalesce({expr}, []),"
            f" lambda a: {{'k': a.key, 'v': {value('a.value')}}})")


def entries_map(entries: str) -> str:
    """{k, v} list → MAP. A key repeated within one record (invalid OTLP, but seen) keeps its
    last value, as a Go map built from it would; the dedup runs only when the fast path fails.
    Pass a column, not an expression: it appears several times, and binding is not free."""
    # Lambda names must not shadow the callers' (`e` for events, `k` for links, `a`).
    last_only = (f"list_filter({entries}, lambda kv_, i_: NOT list_contains(list_transform("
                 f"list_slice({entries}, i_ + 1, len({entries})), lambda later_: later_.k),"
                 f" kv_.k))")
    return f"coalesce(try(map_from_entries({entries})), map_from_entries({last_only}))"


def attrs_map(expr: str, value: Callable[[str], str] = _value) -> str:
    """KeyValue list → MAP in one expression (see `entries_map`)."""
    return entries_map(attr_entries(expr, value))


def _enum_case(expr: str, enum: type[SpanKind] | type[StatusCode], prefix: str) -> str:
    whens = []
    for number, member in enumerate(enum):
        whens.append(f"WHEN '{number}' THEN '{member.value}'")
        whens.append(f"WHEN '{prefix}{member.name}' THEN '{member.value}'")
        whens.append(f"WHEN '{member.name}' THEN '{member.value}'")
    default = next(iter(enum)).value
    return f"CASE upper(coalesce({expr}, '')) {' '.join(whens)} ELSE '{default}' END"


def _ns(expr: str) -> str:
    return f"TRY_CAST({expr} AS BIGINT)"


_LOG = (
    '{"timeUnixNano":"VARCHAR","observedTimeUnixNano":"VARCHAR","severityNumber":"VARCHAR",'
    '"severityText":"VARCHAR","body":%(av)s,"attributes":%(kv)s,"flags":"BIGINT",'
    '"traceId":"VARCHAR","spanId":"VARCHAR","eventName":"VARCHAR"}'
) % {"av": _AV, "kv": _KV}
LOG_REQUEST = (
    '{"resourceLogs":[{"resource":{"attributes":%s},"schemaUrl":"VARCHAR",'
    '"scopeLogs":[{"scope":{"name":"VARCHAR","version":"VARCHAR","attributes":%s},'
    '"schemaUrl":"VARCHAR","logRecords":[%s]}]}]}'
) % (_KV, _KV, _LOG)


def _severity(expr: str) -> str:
    """Severity as an integer, from a number or an enum name (SEVERITY_NUMBER_INFO → 9)."""
    whens = " ".join(f"WHEN '{name}' THEN {number}" for name, number in SeverityNumber.items())
    return (f"coalesce(TRY_CAST({expr} AS INTEGER),"
            f" CASE upper(coalesce({expr}, '')) {whens} END, 0)")


def _pipeline(request: str, top: str, scoped: str, leaves: str, suspect: str = "false",
              one_statement: bool = False) -> str:
    """The CTEs from the Arrow scan of request lines to one row per leaf record (`leaf`).

    DuckDB runs them on every core. A line that is not JSON, or not this signal's request, becomes
    one row carrying its defect and raw text, so it is quarantined with its line number. In a
    statement's select list over `leaf`: Part, LineNo, defect, raw, suspect (the line holds
    fewer records than its text names: see SUSPECT_TRACE_LINES), ri/si/pi (indices), rattrs, rs
    (resource), ss (scope block) and s (the leaf record) are in scope. `suspect` is an
    expression of `j` (the parsed line) and `Line`. For the `one_statement` path, a bad or
    suspect line raises instead (staging_tables.raise_where), and the lists are unnested as they
    are: each CASE around a nested list copies all of it."""
    if not one_statement:
        # A bad or suspect line keeps one row (whose checks see it) however few records it holds.
        def lst(expr: str) -> str:
            return f"CASE WHEN bad OR suspect THEN [NULL] ELSE {expr} END"
        checked = ""
    else:
        def lst(expr: str) -> str:
            return expr
        checked = raise_where("bad OR suspect", "j")
    tops, scopes, leaf_list = (lst(f"j.{top}"), lst(f"coalesce(rs.{scoped}, [])"),
                               lst(f"coalesce(ss.{leaves}, [])"))
    return f"""
WITH req AS (
    -- (a line that is not JSON makes from_json fail; `try` turns that into NULL, and only then
    -- is the line checked again, to tell the two reasons apart)
    SELECT Part, LineNo, Line, try(from_json(Line, '{request}')) AS j
    FROM tt_lines_view
), chk AS (
    SELECT * {checked} FROM (
        SELECT *, j.{top} IS NULL AS bad, j.{top} IS NOT NULL AND ({suspect}) AS suspect FROM req
    )
), top AS (
    SELECT Part, LineNo, bad,
        CASE WHEN bad THEN
            CASE WHEN json_valid(Line) THEN '{QuarantineReason.BAD_SHAPE}'
                 ELSE '{QuarantineReason.UNPARSABLE}' END END AS defect,
        CASE WHEN bad THEN rtrim(Line, chr(10)) END AS raw, suspect,
        unnest({tops}) AS rs, generate_subscripts({tops}, 1) AS ri
    FROM chk
), res AS (
    SELECT Part, LineNo, bad, defect, raw, suspect, ri, rs,
        {attrs_map("rs.resource.attributes")} AS rattrs, {scopes} AS sss
    FROM top
), scoped AS (
    SELECT Part, LineNo, bad, defect, raw, suspect, ri, rs, rattrs, unnest(sss) AS ss,
        generate_subscripts(sss, 1) AS si
    FROM res
), leaf AS (
    SELECT Part, LineNo, defect, raw, suspect, ri, si, rs, rattrs, ss, unnest({leaf_list}) AS s,
        generate_subscripts({leaf_list}, 1) AS pi
    FROM scoped
)"""


def _stage(target: str, request: str, top: str, scoped: str, leaves: str,
           columns: str) -> str:
    """Staging of every leaf record (staging tables end with `Part, LineNo` after the columns
    of their Arrow schema, so the suspect-line check below can find a line's rows)."""
    return f"INSERT INTO {target}\n{_pipeline(request, top, scoped, leaves)}\n" \
        f"SELECT {columns}, Part, LineNo FROM leaf\n"


def _position(kind: str) -> str:
    return (f"CASE WHEN defect IS NULL THEN 'line ' || LineNo || ' {kind} ' || ri || '.' || si"
            f" || '.' || pi ELSE 'line ' || LineNo END")


_SPAN_COLUMNS = f"""
    {_position("span")} AS Pos,
    strlen(coalesce(s.name, '')) + coalesce(list_sum(list_transform(s.attributes,
        lambda a: strlen(a.key) + strlen(coalesce(a.value.stringValue, '')))), 0) AS RecordBytes,
    defect AS Defect, raw AS Raw,
    {_ns("s.startTimeUnixNano")} AS StartNs, {_ns("s.endTimeUnixNano")} AS EndNs,
    s.traceId AS TraceId, s.spanId AS SpanId, s.parentSpanId AS ParentSpanId,
    s.traceState AS TraceState, s.name AS SpanName,
    {_enum_case("s.kind", SpanKind, "SPAN_KIND_")} AS SpanKind,
    rattrs['service.name'] AS ServiceName, rattrs AS ResourceAttributes,
    ss.scope.name AS ScopeName, ss.scope.version AS ScopeVersion,
    {attrs_map("s.attributes")} AS SpanAttributes,
    {_enum_case("s.status.code", StatusCode, "STATUS_CODE_")} AS StatusCode,
    s.status.message AS StatusMessage,
    list_transform(coalesce(s.events, []), lambda e: {{
        'Timestamp': {_ns("e.timeUnixNano")}, 'Name': coalesce(e.name, ''),
        'Attributes': {attrs_map("e.attributes")}}}) AS Events,
    list_transform(coalesce(s.links, []), lambda k: {{
        'TraceId': lower(k.traceId), 'SpanId': lower(k.spanId), 'TraceState': k.traceState,
        'Attributes': {attrs_map("k.attributes")}}}) AS Links"""

STAGE_SPANS = _stage("stg_spans", TRACE_REQUEST, "resourceSpans", "scopeSpans", "spans",
                     _SPAN_COLUMNS)


STAGE_LOGS = _stage("stg_logs", LOG_REQUEST, "resourceLogs", "scopeLogs", "logRecords", f"""
    {_position("log")},
    strlen(coalesce(s.body.stringValue, '')) + coalesce(list_sum(list_transform(s.attributes,
        lambda a: strlen(a.key) + strlen(coalesce(a.value.stringValue, '')))), 0),
    defect, raw,
    {_ns("s.timeUnixNano")}, {_ns("s.observedTimeUnixNano")}, s.traceId, s.spanId, s.flags,
    s.severityText, {_severity("s.severityNumber")}, rattrs['service.name'],
    CASE WHEN s.body IS NULL THEN NULL ELSE {_value("s.body")} END,
    rs.schemaUrl, rattrs, ss.schemaUrl, ss.scope.name, ss.scope.version,
    {attrs_map("ss.scope.attributes")}, {attrs_map("s.attributes")}, s.eventName
""")


# The engine's from_json is lenient: a mistyped container (`"spans": "x"`) becomes NULL and its
# records would vanish. So each line's records are also counted in its raw text (by a key every
# record carries) and compared with what was staged; a line that staged fewer is suspect.
def _occurrences(key: str) -> str:
    needle = f'"{key}":'
    return f"(length(Line) - length(replace(Line, '{needle}', ''))) // {len(needle)}"


SUSPECT_TRACE_LINES = f"""
WITH staged AS (
    SELECT Part, LineNo, count(*) + coalesce(sum(len(Links)), 0) AS n,
        bool_or(Defect IS NOT NULL) AS defect
    FROM stg_spans GROUP BY ALL
)
SELECT v.Part, v.LineNo, v.Line, coalesce(s.n, 0)
FROM tt_lines_view v LEFT JOIN staged s USING (Part, LineNo)
WHERE NOT coalesce(s.defect, false) AND coalesce(s.n, 0) < greatest({_occurrences("spanId")}, 1)
"""

SUSPECT_LOG_LINES = f"""
WITH staged AS (
    SELECT Part, LineNo, count(*) AS n, bool_or(Defect IS NOT NULL) AS defect
    FROM stg_logs GROUP BY ALL
)
SELECT v.Part, v.LineNo, v.Line, coalesce(s.n, 0)
FROM tt_lines_view v LEFT JOIN staged s USING (Part, LineNo)
WHERE NOT coalesce(s.defect, false) AND coalesce(s.n, 0) < greatest(
    {_occurrences("timeUnixNano")}, {_occurrences("observedTimeUnixNano")}, 1)
"""

# Records a trace line holds as parsed (spans, and their links, as staging counts them) against
# the `"spanId":` keys in its text: fewer means from_json dropped a mistyped container.
_PARSED_SPANS = (
    "coalesce(list_sum(list_transform(j.resourceSpans, lambda r_: coalesce(list_sum("
    "list_transform(r_.scopeSpans, lambda ss_: coalesce(len(ss_.spans), 0) + coalesce(list_sum("
    "list_transform(ss_.spans, lambda sp_: coalesce(len(sp_.links), 0))), 0))), 0))), 0)")

# The fast path of a chunk of trace lines: one statement parses, converts, validates and inserts
# straight into otel_traces (no staging, copy and UPDATE: a quarter of the time). It holds only
# when nothing in the chunk needs quarantine: a bad line, a rejected span or a suspect line
# raises (staging_tables.raise_where), and the chunk takes the staging path. The statement
# has no WHERE: every row it reads is stored or raises, and the caller registers only the lines
# of parts to store. (A filter here made DuckDB's unordered parallel insert twice as slow.)
_TO_QUARANTINE = f"t.Defect IS NOT NULL OR t.suspect OR {validate.span_defect('t')} IS NOT NULL"
STORE_SPANS = f"""
INSERT INTO otel_traces
{_pipeline(TRACE_REQUEST, "resourceSpans", "scopeSpans", "spans",
           suspect=f"{_PARSED_SPANS} < greatest({_occurrences('spanId')}, 1)",
           one_statement=True)}
SELECT {validate.span_columns()}
FROM (SELECT * {raise_where(_TO_QUARANTINE, "StartNs")}
    FROM (SELECT {_SPAN_COLUMNS}, Part, suspect FROM leaf) t) t
"""

_CONTAINERS = {
    "stg_spans": ("resourceSpans", "scopeSpans", "spans"),
    "stg_logs": ("resourceLogs", "scopeLogs", "logRecords"),
}


def well_formed_count(line: str, table: str) -> int | None:
    """The records a line holds (spans count their links too, as staging does) when every
    container on the way is a list of objects; None when one is not (from_json would have
    dropped what it holds). Settles lines the raw key count flagged: a `"spanId":` key can also
    sit in an unknown vendor object, which must not send a good line to quarantine."""
    top, scoped, leaves = _CONTAINERS[table]
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    count = 0
    blocks = doc.get(top, []) if isinstance(doc, dict) else None
    if not isinstance(blocks, list):
        return None
    for block in blocks:
        scopes = block.get(scoped, []) if isinstance(block, dict) else None
        if not isinstance(scopes, list):
            return None
        for scope in scopes:
            records = scope.get(leaves, []) if isinstance(scope, dict) else None
            if not isinstance(records, list):
                return None
            for record in records:
                if not isinstance(record, dict):
                    return None
                links = record.get("links", []) if table == "stg_spans" else []
                if not isinstance(links, list):
                    return None
                count += 1 + len(links)
    return count


def requarantine_line(table: str) -> str:
    """Replace a suspect line's staged rows with one row quarantining the whole line."""
    return f"DELETE FROM {table} WHERE Part = $part AND LineNo = $line"


def line_defect_row(table: str) -> str:
    return (f"INSERT INTO {table} (Pos, RecordBytes, Defect, Raw, Part, LineNo)"
            " VALUES ($pos, $bytes, $defect, $raw, $part, $line)")
