"""SQL the HTML report needs beyond the analyses: spans and errors per time bucket, and the
slowest trace of each kind of request (root service + operation) in a window."""

from __future__ import annotations

from typing import Any

import duckdb

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import is_error, span_filter

VOLUME = """
SELECT (Timestamp - $t0) // $width AS t, count(*) AS n, count(*) FILTER (WHERE {err}) AS e
FROM otel_traces WHERE {where} AND Timestamp >= $t0
GROUP BY 1 ORDER BY 1
"""

# Roots only (ParentSpanId ''), one per root service: the slowest of each, then the slowest of
# those, so the long batch jobs of one service (CI, agents) do not fill the whole list.
SLOWEST_ROOTS = """
WITH r AS (
    SELECT TraceId, ServiceName, SpanName, Duration,
        row_number() OVER (PARTITION BY ServiceName
                           ORDER BY Duration DESC, TraceId) AS k
    FROM otel_traces WHERE {where} AND ParentSpanId = ''
)
SELECT TraceId, ServiceName, SpanName, Duration FROM r WHERE k = 1
ORDER BY Duration DESC, TraceId LIMIT $limit
"""


def volume(con: duckdb.DuckDBPyConnection, scope: Scope, t0: int, width: int
           ) -> list[tuple[int, int, int]]:
    """(time bucket, spans, error spans) for buckets holding any span."""
    where, params = span_filter(scope)
    rows = con.execute(VOLUME.format(where=where, err=is_error()),
                       {**params, "t0": t0, "width": width}).fetchall()
    return [(int(t), int(n), int(e)) for t, n, e in rows]


def slowest_roots(con: duckdb.DuckDBPyConnection, scope: Scope, limit: int
                  ) -> list[tuple[str, str, str, int]]:
    where, params = span_filter(scope)
    params_all: dict[str, Any] = {**params, "limit": limit}
    return [(str(t), str(s), str(o), int(d))
            for t, s, o, d in con.execute(SLOWEST_ROOTS.format(where=where), params_all).fetchall()]
