"""SQL for compare (BubbleUp): attribute values over-represented in a selection of spans.

Every span in scope is either selected or baseline. Its span attributes, resource attributes and
a few columns (as pseudo-attributes) are unnested to (source, key, value) rows and counted per
side, all in the engine; only the top values and the list of high-cardinality keys come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telltale.analyses.scope import Scope
from telltale.store.log_links_sql import has_error_log
from telltale.store.scope_sql import is_error, span_filter

# Columns that behave like attributes (`--where ServiceName=payment`), as (name, SQL).
FIELDS = {"ServiceName": "t.ServiceName", "SpanName": "t.SpanName", "SpanKind": "t.SpanKind",
          "StatusCode": "t.StatusCode", "ScopeName": "t.ScopeName"}


def failed(alias: str, log_errors: bool) -> str:
    """Span `alias` failed: its status says so or (with `log_errors`) an error-level log is
    attached to it (log_links_sql)."""
    return f"({is_error(alias)} OR {has_error_log(alias)})" if log_errors else is_error(alias)


def _failed_child(log_errors: bool) -> str:
    """An error that does not start in span t: one of its children failed."""
    return (f"EXISTS (SELECT 1 FROM otel_traces c WHERE c.TraceId = t.TraceId "
            f"AND c.ParentSpanId = t.SpanId AND {failed('c', log_errors)})")


def selection(errors: bool, origin_errors: bool, slower_than_ns: int | None,
              where: Sequence[tuple[str, str]],
              log_errors: bool = False) -> tuple[str, dict[str, Any]]:
    """The selection as a bound SQL condition over `otel_traces t` (all criteria must hold)."""
    clauses = ["true"]
    params: dict[str, Any] = {}
    if errors or origin_errors:
        clauses.append(failed("t", log_errors))
    if origin_errors:
        clauses.append(f"NOT {_failed_child(log_errors)}")
    if slower_than_ns is not None:
        clauses.append("t.Duration > $sel_slower")
        params["sel_slower"] = slower_than_ns
    for i, (key, value) in enumerate(where):
        column = FIELDS.get(key, "NULL")
        clauses.append(f"coalesce(t.SpanAttributes[$sel_k{i}], t.ResourceAttributes[$sel_k{i}], "
                       f"{column}) = $sel_v{i}")
        params[f"sel_k{i}"], params[f"sel_v{i}"] = key, value
    # A span without the attribute is not selected: part of the baseline, not left out (NULL).
    return f"coalesce({' AND '.join(clauses)}, false)", params


_PSEUDO = ", ".join(f"{{'key': '{name}', 'value': {sql}}}" for name, sql in FIELDS.items())

_COUNTS = f"""
WITH s AS (
    SELECT t.SpanAttributes, t.ResourceAttributes, [{_PSEUDO}] AS fields, ({{selection}}) AS sel
    FROM otel_traces t WHERE {{where}}
), kv AS (
    SELECT 'span' AS source, unnest(map_entries(SpanAttributes)) AS e, sel FROM s
    UNION ALL SELECT 'resource', unnest(map_entries(ResourceAttributes)), sel FROM s
    UNION ALL SELECT 'field', unnest(fields), sel FROM s
), counts AS (
    SELECT source, e.key AS key, e.value AS value,
        count(*) FILTER (WHERE sel) AS c_sel, count(*) FILTER (WHERE NOT sel) AS c_base
    FROM kv WHERE e.value IS NOT NULL
    GROUP BY ALL
), keys AS (
    SELECT source, key, count(*) AS distinct_values, sum(c_sel + c_base) AS spans,
        count(*) > greatest($min_distinct, $max_fraction * sum(c_sel + c_base)) AS high_card
    FROM counts
    WHERE NOT list_contains($skip_keys, key)
        AND NOT list_bool_or([starts_with(key, p) FOR p IN $skip_prefixes])
    GROUP BY ALL
)
"""

# The side totals, whatever the attributes.
TOTALS = """
SELECT count(*) FILTER (WHERE {selection}) AS n_sel, count(*) FILTER (WHERE NOT ({selection}))
FROM otel_traces t WHERE {where}
"""

# Proportions per side; the lift is add-half smoothed so a value absent from one side still
# has a finite ratio. Score: the difference in proportions, weighted by how distinctive the
# value is (1 - the smaller of lift and 1/lift), so common values that are merely a bit more
# frequent rank below values that nearly only occur in the selection. The high-cardinality
# keys come back in the same result (kind 'high_cardinality') so the unnesting runs once.
RESULT = _COUNTS + """, scored AS (
    SELECT c.*, c_sel / $n_sel AS p_sel, c_base / nullif($n_base, 0) AS p_base,
        ((c_sel + 0.5) / ($n_sel + 1)) / ((c_base + 0.5) / ($n_base + 1)) AS lift
    FROM counts c SEMI JOIN keys k ON k.source = c.source AND k.key = c.key AND NOT k.high_card
), ranked AS (
    SELECT *, p_sel - coalesce(p_base, 0) AS diff,
        (p_sel - coalesce(p_base, 0)) * (1 - least(lift, 1 / lift)) AS score
    FROM scored
    ORDER BY score DESC, diff DESC, source, key, value
    LIMIT $limit
)
SELECT * FROM (
    SELECT 'value' AS kind, source, key, value, c_sel, c_base, p_sel, p_base, diff, lift, score
    FROM ranked
    UNION ALL
    SELECT 'high_cardinality', source, key, NULL, distinct_values, spans::BIGINT, NULL, NULL, NULL,
        NULL, NULL
    FROM keys WHERE high_card
)
ORDER BY kind DESC, score DESC NULLS LAST, diff DESC, source, key, value
"""


def _sql(template: str, scope: Scope, sel: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    where, params = span_filter(scope, alias="t")
    return (template.replace("{selection}", sel[0]).replace("{where}", where),
            {**params, **sel[1]})


def totals(con: Any, scope: Scope, sel: tuple[str, dict[str, Any]]) -> tuple[int, int]:
    sql, params = _sql(TOTALS, scope, sel)
    n_sel, n_base = con.execute(sql, params).fetchone()
    return int(n_sel), int(n_base)


# Selected failures that only pass on a child's failure (its callers fail because it did).
PROPAGATED = """
SELECT count(*) FROM otel_traces t
WHERE {where} AND ({selection}) AND {failed} AND {failed_child}
"""


def propagated_errors(con: Any, scope: Scope, sel: tuple[str, dict[str, Any]],
                      log_errors: bool = False) -> int:
    template = PROPAGATED.replace("{failed}", failed("t", log_errors)).replace(
        "{failed_child}", _failed_child(log_errors))
    sql, params = _sql(template, scope, sel)
    return int(con.execute(sql, params).fetchone()[0])


# Selected spans that count as failed only through an attached error log.
LOG_ONLY = f"""
SELECT count(*) FROM otel_traces t
WHERE {{where}} AND ({{selection}}) AND NOT {is_error('t')} AND {has_error_log('t')}
"""


def log_only_errors(con: Any, scope: Scope, sel: tuple[str, dict[str, Any]]) -> int:
    sql, params = _sql(LOG_ONLY, scope, sel)
    return int(con.execute(sql, params).fetchone()[0])


def values(con: Any, scope: Scope, sel: tuple[str, dict[str, Any]], counts: tuple[int, int],
           skip_keys: Sequence[str], skip_prefixes: Sequence[str], min_distinct: int,
           max_fraction: float, limit: int) -> list[tuple[Any, ...]]:
    """Rows (kind, source, key, value, c_sel, c_base, p_sel, p_base, diff, lift, score): the
    best `limit` values first (kind 'value'), then the keys left out as high-cardinality (kind
    'high_cardinality', with distinct values and spans carrying the key as c_sel, c_base)."""
    sql, params = _sql(RESULT, scope, sel)
    # A never-matching entry keeps the lists typed VARCHAR[] even when empty.
    rows: list[tuple[Any, ...]] = con.execute(sql, {
        **params, "n_sel": counts[0], "n_base": counts[1], "limit": limit,
        "skip_keys": [*skip_keys, "\0"], "skip_prefixes": [*skip_prefixes, "\0"],
        "min_distinct": min_distinct, "max_fraction": max_fraction}).fetchall()
    return rows
