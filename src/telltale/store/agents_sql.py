"""SQL for agent analytics: agent spans and LLM calls, their dimensions read from attributes.

Attribute names differ by source, so each dimension is the first present of several spellings:
the GenAI semantic conventions (`gen_ai.request.model`, `gen_ai.agent.name`, `gen_ai.usage.*`),
the simulator's and the agent-spawn preset's `agent.*` attributes, and the plain names a
`telltale.recorder` user writes (`model`, `role`, `task`, `source`). The dimension expressions
are constants chosen by key (never user text); every value is a bound parameter.
"""

from __future__ import annotations

from typing import Any

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import is_error, span_filter


def _first(*keys: str) -> str:
    return "coalesce(" + ", ".join(f"nullif(SpanAttributes['{k}'], '')" for k in keys) + ")"


MODEL = _first("gen_ai.request.model", "gen_ai.response.model", "agent.model", "llm.model", "model")
ROLE = _first("agent.caste", "agent.role", "gen_ai.agent.name", "role", "caste")
TASK = _first("agent.task", "task.type", "task", "agent.task.type")
SOURCE = _first("agent.routing.source", "agent.source", "routing.source", "routing_source", "source")
PROVIDER = _first("gen_ai.provider.name", "gen_ai.system", "agent.provider", "provider")
OPERATION = _first("gen_ai.operation.name")
TOKENS_IN = f"try_cast({_first('gen_ai.usage.input_tokens', 'agent.tokens_in', 'tokens_in')} AS BIGINT)"
TOKENS_OUT = f"try_cast({_first('gen_ai.usage.output_tokens', 'agent.tokens_out', 'tokens_out')} AS BIGINT)"
TOKENS_ALL = f"try_cast({_first('agent.tokens', 'tokens', 'gen_ai.usage.total_tokens')} AS BIGINT)"
OUTCOME = f"lower({_first('agent.outcome', 'outcome')})"

DIMENSIONS = {"model": "model", "role": "role", "task": "task", "source": "source",
              "provider": "provider", "service": "service", "unit": "unit"}
UNITS = ("agent", "call")

# One row per agent span or LLM call in scope: a span with a model, or an agent (a role).
# An agent span names a role or is an `invoke_agent` operation; anything else with a model is
# an LLM call. Failed: error status; its class is error.type, else the outcome word.
_BASE = f"""
WITH a AS (
    SELECT Timestamp, Duration, ServiceName AS service,
        {MODEL} AS model, {ROLE} AS role, {TASK} AS task, {SOURCE} AS source,
        {PROVIDER} AS provider,
        CASE WHEN {ROLE} IS NOT NULL OR {OPERATION} IN ('invoke_agent', 'create_agent')
             THEN 'agent' ELSE 'call' END AS unit,
        {is_error()} AS failed,
        CASE WHEN {is_error()} THEN coalesce(nullif(SpanAttributes['error.type'], ''),
                                            {OUTCOME}, 'error') END AS error_class,
        {TOKENS_IN} AS tokens_in, {TOKENS_OUT} AS tokens_out,
        coalesce({TOKENS_ALL}, {TOKENS_IN} + {TOKENS_OUT}, {TOKENS_IN}, {TOKENS_OUT}) AS tokens
    FROM otel_traces
    WHERE {{where}} AND ({MODEL} IS NOT NULL OR {ROLE} IS NOT NULL OR {OPERATION} IS NOT NULL)
)
"""

_UNIT_FILTER = "list_contains($units, unit)"

STATS = _BASE + f"""
SELECT {{dims}}, count(*) AS n, count(*) FILTER (WHERE failed) AS failures,
    quantile_cont(Duration, [0.5, 0.9, 0.99]) AS q, max(Duration) AS max_ns,
    sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(tokens) AS tokens
FROM a WHERE {_UNIT_FILTER}
GROUP BY ALL ORDER BY ALL
"""

ERROR_CLASSES = _BASE + f"""
SELECT {{dims}}, error_class, count(*) AS n
FROM a WHERE {_UNIT_FILTER} AND failed
GROUP BY ALL ORDER BY ALL
"""

# Tokens per group and model: the cost of a group is priced model by model.
TOKENS_BY_MODEL = _BASE + f"""
SELECT {{dims}}, model, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out
FROM a WHERE {_UNIT_FILTER}
GROUP BY ALL ORDER BY ALL
"""

TRENDS = _BASE + f"""
SELECT (Timestamp // $bucket) * $bucket AS bucket, {{dims}}, count(*) AS n,
    count(*) FILTER (WHERE failed) AS failures, quantile_cont(Duration, 0.5) AS p50,
    sum(tokens) AS tokens
FROM a WHERE {_UNIT_FILTER}
GROUP BY ALL ORDER BY ALL
"""

UNIT_COUNTS = _BASE + """
SELECT unit, count(*) FROM a GROUP BY ALL ORDER BY ALL
"""


def _dims(by: tuple[str, ...]) -> str:
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown or not by:
        raise ValueError(f"cannot group agents by {', '.join(unknown) or 'nothing'}; choose from "
                         f"{', '.join(DIMENSIONS)}")
    return ", ".join(f"coalesce({DIMENSIONS[d]}, '-') AS {DIMENSIONS[d]}" for d in by)


def _run(con: Any, template: str, scope: Scope, by: tuple[str, ...],
         extra: dict[str, Any]) -> list[tuple[Any, ...]]:
    where, params = span_filter(scope)
    rows: list[tuple[Any, ...]] = con.execute(template.format(where=where, dims=_dims(by)),
                                              {**params, **extra}).fetchall()
    return rows


def stats(con: Any, scope: Scope, by: tuple[str, ...], units: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """(*dims, n, failures, [p50, p90, p99] ns, max ns, tokens in, out, all) per group."""
    return _run(con, STATS, scope, by, {"units": list(units)})


def error_classes(con: Any, scope: Scope, by: tuple[str, ...],
                  units: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """(*dims, error class, n) per group and class of failure."""
    return _run(con, ERROR_CLASSES, scope, by, {"units": list(units)})


def tokens_by_model(con: Any, scope: Scope, by: tuple[str, ...],
                    units: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """(*dims, model, tokens in, tokens out) per group and model."""
    return _run(con, TOKENS_BY_MODEL, scope, by, {"units": list(units)})


def trends(con: Any, scope: Scope, by: tuple[str, ...], units: tuple[str, ...],
           bucket_ns: int) -> list[tuple[Any, ...]]:
    """(bucket start ns, *dims, n, failures, p50 ns, tokens) per bucket and group."""
    return _run(con, TRENDS, scope, by, {"units": list(units), "bucket": bucket_ns})


def unit_counts(con: Any, scope: Scope) -> dict[str, int]:
    where, params = span_filter(scope)
    rows = con.execute(UNIT_COUNTS.format(where=where), params).fetchall()
    return {str(u): int(n) for u, n in rows}
