"""SQL for log analytics over assigned templates (`telltale_log_template_of`) and `otel_logs`.

Every aggregate runs in DuckDB; Python receives one row per template (or per parameter value,
or per returned record). Values are bound parameters; only fixed column names are composed.
ERROR_SEVERITY is OpenTelemetry's first ERROR severity number (17: ERROR..FATAL4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import span_filter

ERROR_SEVERITY = 17


@dataclass(frozen=True)
class LogFilter:
    """Records with Timestamp in [since, until) (None: open), of these services (empty: all)."""

    since: int | None = None
    until: int | None = None
    services: tuple[str, ...] = ()


def where(f: LogFilter, alias: str, prefix: str) -> tuple[str, dict[str, Any]]:
    """(SQL boolean expression, its named parameters); `prefix` keeps two windows apart. Log
    records share the span table's Timestamp/ServiceName columns: the span filter serves."""
    return span_filter(Scope(f.since, f.until, f.services), alias, prefix)


def has_templates(con: Any) -> bool:
    """Whether the store has the template tables (schema 2+; an older store opened read-only
    has not been migrated yet)."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables"
                            " WHERE table_name = 'telltale_log_template_of'").fetchall()[0][0])


def templates(con: Any, f: LogFilter, top: int | None) -> list[tuple[Any, ...]]:
    """(id, stored template, records, errors, first ns, last ns, services) by records desc."""
    cond, params = where(f, "o", "w")
    params["top"] = top
    return list(con.execute(f"""
        SELECT o.TemplateId, t.template, count(*) AS records,
            count(*) FILTER (WHERE o.SeverityNumber >= {ERROR_SEVERITY}) AS errors,
            min(o.Timestamp), max(o.Timestamp), list_sort(list(DISTINCT o.ServiceName))
        FROM telltale_log_template_of o JOIN telltale_log_templates t ON t.id = o.TemplateId
        WHERE {cond}
        GROUP BY o.TemplateId, t.template
        ORDER BY records DESC, o.TemplateId
        LIMIT $top""", params).fetchall())


def coverage(con: Any, f: LogFilter) -> tuple[int, int]:
    """(log records in the filter, those with a template): they differ only in stores written
    before templates were assigned at ingest, until `telltale logs reindex`."""
    cond_l, params = where(f, "l", "w")
    cond_o, _ = where(f, "o", "w")
    row = con.execute(f"""
        SELECT (SELECT count(*) FROM otel_logs l WHERE {cond_l}),
               (SELECT count(*) FROM telltale_log_template_of o WHERE {cond_o})""",
                      params).fetchall()[0]
    return int(row[0]), int(row[1])


def window_vs_baseline(con: Any, window: LogFilter, baseline: LogFilter) -> list[tuple[Any, ...]]:
    """Per template seen in either window: (id, stored template, window records, window errors,
    window first ns, window last ns, baseline records, the template's first_seen ever)."""
    cond_w, params = where(window, "o", "w")
    cond_b, params_b = where(baseline, "o", "b")
    params.update(params_b)
    return list(con.execute(f"""
        WITH w AS (
            SELECT TemplateId, count(*) AS n,
                count(*) FILTER (WHERE SeverityNumber >= {ERROR_SEVERITY}) AS errors,
                min(Timestamp) AS first_ns, max(Timestamp) AS last_ns
            FROM telltale_log_template_of o WHERE {cond_w} GROUP BY TemplateId),
        b AS (SELECT TemplateId, count(*) AS n FROM telltale_log_template_of o
              WHERE {cond_b} GROUP BY TemplateId)
        SELECT t.id, t.template, coalesce(w.n, 0), coalesce(w.errors, 0), w.first_ns, w.last_ns,
            coalesce(b.n, 0), t.first_seen
        FROM w FULL OUTER JOIN b ON w.TemplateId = b.TemplateId
        JOIN telltale_log_templates t ON t.id = coalesce(w.TemplateId, b.TemplateId)
        ORDER BY t.id""", params).fetchall())


def log_range(con: Any) -> tuple[int | None, int | None]:
    row = con.execute("SELECT min(Timestamp), max(Timestamp) FROM telltale_log_template_of"
                      ).fetchall()[0]
    return (None if row[0] is None else int(row[0]), None if row[1] is None else int(row[1]))


def template_row(con: Any, template_id: int) -> tuple[Any, ...] | None:
    rows = con.execute("SELECT id, template FROM telltale_log_templates WHERE id = $id",
                       {"id": template_id}).fetchall()
    return tuple(rows[0]) if rows else None


def param_shapes(con: Any, template_id: int, f: LogFilter) -> list[tuple[int, int]]:
    """(number of parameters, records) of a template's records: records assigned before the
    template last widened have fewer parameters than it has slots now."""
    cond, params = where(f, "o", "w")
    params["id"] = template_id
    return [(int(a), int(b)) for a, b in con.execute(f"""
        SELECT len(Params), count(*) FROM telltale_log_template_of o
        WHERE o.TemplateId = $id AND {cond} GROUP BY 1 ORDER BY 1""", params).fetchall()]


def top_params(con: Any, template_id: int, slots: int, f: LogFilter,
               top: int) -> list[tuple[Any, ...]]:
    """(position from 1, value, records, distinct values at the position) for the `top` most
    frequent values of each slot, over records whose parameters fill exactly `slots` slots."""
    cond, params = where(f, "o", "w")
    params.update({"id": template_id, "slots": slots, "top": top})
    return list(con.execute(f"""
        WITH v AS (
            SELECT generate_subscripts(Params, 1) AS pos, unnest(Params) AS value
            FROM telltale_log_template_of o
            WHERE o.TemplateId = $id AND len(o.Params) = $slots AND {cond}),
        c AS (SELECT pos, value, count(*) AS n FROM v GROUP BY pos, value)
        SELECT pos, value, n, count(*) OVER (PARTITION BY pos) AS distinct_values
        FROM c
        QUALIFY row_number() OVER (PARTITION BY pos ORDER BY n DESC, value) <= $top
        ORDER BY pos, n DESC, value""", params).fetchall())


@dataclass(frozen=True)
class SearchFilter:
    text: str | None = None          # substring of the body, case-insensitive
    template_id: int | None = None
    min_severity: int | None = None  # SeverityNumber at least this
    trace_id: str | None = None


def search(con: Any, f: LogFilter, s: SearchFilter, limit: int) -> list[tuple[Any, ...]]:
    """Records newest first: (Timestamp, ServiceName, SeverityText, SeverityNumber, TraceId,
    SpanId, Body, TemplateId or NULL, Params or NULL)."""
    cond, params = where(f, "l", "w")
    clauses = [cond]
    if s.text:
        clauses.append("contains(lower(l.Body), lower($text))")
        params["text"] = s.text
    if s.min_severity is not None:
        clauses.append("l.SeverityNumber >= $sev")
        params["sev"] = s.min_severity
    if s.trace_id:
        clauses.append("l.TraceId = lower($trace)")
        params["trace"] = s.trace_id
    if s.template_id is not None:
        # Cheap candidates by (BatchId, Timestamp) first; the body's key is checked on those.
        clauses.append("""EXISTS (SELECT 1 FROM telltale_log_template_of k
            WHERE k.TemplateId = $tid AND k.BatchId = l.BatchId AND k.Timestamp = l.Timestamp
            AND k.BodyKey = md5_number(l.Body))""")
        params["tid"] = s.template_id
    params["limit"] = limit
    return list(con.execute(f"""
        WITH found AS (
            SELECT l.Timestamp, l.BatchId, l.ServiceName, l.SeverityText, l.SeverityNumber,
                l.TraceId, l.SpanId, l.Body
            FROM otel_logs l WHERE {" AND ".join(clauses)}
            ORDER BY l.Timestamp DESC, l.ServiceName, l.Body LIMIT $limit),
        hits AS (SELECT row_number() OVER (ORDER BY Timestamp DESC, ServiceName, Body) AS rn, *
                 FROM found)
        SELECT any_value(h.Timestamp), any_value(h.ServiceName), any_value(h.SeverityText),
            any_value(h.SeverityNumber), any_value(h.TraceId), any_value(h.SpanId),
            any_value(h.Body), any_value(k.TemplateId), any_value(k.Params)
        FROM hits h LEFT JOIN telltale_log_template_of k
            ON k.BatchId = h.BatchId AND k.Timestamp = h.Timestamp
            AND k.BodyKey = md5_number(h.Body)
        GROUP BY h.rn ORDER BY h.rn""", params).fetchall())
