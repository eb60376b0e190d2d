"""SQL for extraction rules: one statement per rule turns matching log records into staged
spans or gauge points (the store's write path then validates and stores them).

The rule's regex and every literal text are bound parameters; capture groups are read from the
`regexp_extract` struct by position (`c1`, `c2`... — never by the user's names), so nothing a rule
file says is spliced into SQL text. Each row also says whether it is `usable` (its number
parsed) and already `present` (derived by an earlier run: the ids are a hash of the rule and the
log row, so a re-run finds them), which lets the caller count and filter without a second scan.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from telltale.analyses.log_extract_spec import Rule, Template
from telltale.analyses.scope import Scope
from telltale.store.scope_sql import span_filter

# Matching logs with their captures; `dup` numbers identical records (same time, service and
# body) so that each still derives its own span.
_MATCHES = """
WITH m AS (
    SELECT Timestamp, ServiceName, Body, SeverityNumber, TraceId AS LogTraceId,
        regexp_extract(Body, $pattern, $names) AS g
    FROM otel_logs
    WHERE {where} AND regexp_matches(Body, $pattern)
), d AS (
    SELECT *, row_number() OVER (PARTITION BY Timestamp, ServiceName, Body ORDER BY LogTraceId)
        AS dup
    FROM m
)
"""

SPANS = _MATCHES + """
, s AS (
    SELECT *, md5(concat_ws(chr(31), $rule, Timestamp::VARCHAR, ServiceName, Body,
                            dup::VARCHAR)) AS tid,
        round(TRY_CAST({duration} AS DOUBLE) * $unit_ns)::BIGINT AS dur
    FROM d
)
SELECT 'log ' || Timestamp::VARCHAR AS Pos, strlen(Body)::BIGINT AS RecordBytes,
    Timestamp - dur AS StartNs, Timestamp AS EndNs, tid AS TraceId,
    substr(md5(tid || 'span'), 1, 16) AS SpanId, '' AS ParentSpanId,
    {name} AS SpanName, $kind AS SpanKind,
    coalesce(nullif({service}, ''), ServiceName) AS ServiceName,
    {attributes} AS SpanAttributes,
    CASE WHEN SeverityNumber >= 17 THEN 'Error' ELSE 'Unset' END AS StatusCode,
    dur IS NOT NULL AND dur >= 0 AS usable,
    EXISTS (SELECT 1 FROM otel_traces t WHERE t.TraceId = s.tid) AS present
FROM s
ORDER BY Timestamp, SpanId
"""

GAUGES = _MATCHES + """
, p AS (
    SELECT *, {name} AS metric, coalesce(nullif({service}, ''), ServiceName) AS svc,
        {attributes} AS attrs, TRY_CAST({value} AS DOUBLE) AS v
    FROM d
    QUALIFY row_number() OVER (PARTITION BY svc, metric, Timestamp, attrs::VARCHAR) = 1
)
SELECT 'log ' || Timestamp::VARCHAR AS Pos, strlen(Body)::BIGINT AS RecordBytes,
    svc AS ServiceName, metric AS MetricName, $unit AS MetricUnit, '' AS MetricDescription,
    attrs AS Attributes, Timestamp AS TimeUnix, 0::BIGINT AS StartTimeUnix, 0::BIGINT AS Flags,
    v AS Value, v IS NOT NULL AND NOT isnan(v) AS usable,
    EXISTS (SELECT 1 FROM otel_metrics_gauge o WHERE o.ServiceName = p.svc
        AND o.MetricName = p.metric AND o.TimeUnix = p.Timestamp
        AND o.Attributes::VARCHAR = p.attrs::VARCHAR) AS present
FROM p
ORDER BY Timestamp, MetricName
"""

CHECK = "SELECT regexp_extract('', $pattern, $names), regexp_matches('', $pattern)"


class _Params:
    """Bound parameters of one statement; literal text of templates is added as `$litN`."""

    def __init__(self, rule: Rule, scope: Scope) -> None:
        self.rule = rule
        where, params = span_filter(Scope(scope.since, scope.until, scope.services or rule.services))
        self.where = where
        self.values: dict[str, Any] = {**params, "pattern": rule.regex, "names": names(rule),
                                       "rule": rule.name}

    def group(self, name: str) -> str:
        return f"g.c{self.rule.groups.index(name) + 1}"

    def template(self, t: Template | None) -> str:
        if t is None:
            return "''"
        pieces = []
        for is_group, text in t.parts:
            if is_group:
                pieces.append(f"coalesce({self.group(text)}, '')")
            else:
                key = f"lit{len(self.values)}"
                self.values[key] = text
                pieces.append(f"${key}")
        return "concat(" + ", ".join(pieces) + ")"

    def attributes(self, entries: list[tuple[str, str]]) -> str:
        """A MAP of (key, value SQL) pairs; keys are bound, empty values left out."""
        items = []
        for key, value in entries:
            name = f"key{len(self.values)}"
            self.values[name] = key
            items.append(f"{{'k': ${name}, 'v': {value}}}")
        return ("map_from_entries(list_filter([" + ", ".join(items) + "], lambda e: e.v <> ''))"
                if items else "MAP()::MAP(VARCHAR, VARCHAR)")


def names(rule: Rule) -> list[str]:
    """Positional names for `regexp_extract`'s struct: c1, c2... (one per capture group)."""
    return [f"c{i}" for i in range(1, len(rule.groups) + 1)]


def check(con: duckdb.DuckDBPyConnection, rule: Rule) -> None:
    """Raise duckdb.Error when the engine (RE2) refuses the rule's regex."""
    con.execute(CHECK, {"pattern": rule.regex, "names": names(rule)}).fetchall()


def spans(con: duckdb.DuckDBPyConnection, rule: Rule, scope: Scope) -> pa.Table:
    assert rule.span is not None
    p = _Params(rule, scope)
    target = rule.span
    used = {target.duration, *target.name.groups,
            *(target.service.groups if target.service else ())}
    entries = [("telltale.derived_from", "$rule"), ("telltale.log.trace_id", "LogTraceId")]
    entries += [(g, f"coalesce({p.group(g)}, '')") for g in rule.groups if g and g not in used]
    sql = SPANS.format(
        where=p.where, duration=p.group(target.duration), name=p.template(target.name),
        service=p.template(target.service), attributes=p.attributes(entries))
    p.values.update(unit_ns=target.unit_ns, kind=target.kind)
    return con.sql(sql, params=p.values).to_arrow_table()


def gauges(con: duckdb.DuckDBPyConnection, rule: Rule, scope: Scope) -> pa.Table:
    assert rule.metric is not None
    p = _Params(rule, scope)
    target = rule.metric
    attrs = p.attributes([(a, f"coalesce({p.group(a)}, '')") for a in target.attributes])
    sql = GAUGES.format(
        where=p.where, value=p.group(target.value), name=p.template(target.name),
        service=p.template(target.service), attributes=attrs)
    p.values["unit"] = target.unit
    del p.values["rule"]  # points carry no rule name (it would split series)
    return con.sql(sql, params=p.values).to_arrow_table()
