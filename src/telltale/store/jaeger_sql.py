"""SQL behind the Jaeger query API's look-up lists: the services and each service's operations.

Traces themselves come from `trace_detail_sql` (search and whole-trace reads) and the dependency
links from `deps_sql`; these two lists are what the Jaeger UI and Grafana's Jaeger data source
fill their drop-downs with. Every value is a bound parameter.
"""

from __future__ import annotations

import duckdb

SERVICES = """
SELECT DISTINCT ServiceName FROM otel_traces WHERE ServiceName <> '' ORDER BY ServiceName
"""

# One row per (operation, stored kind); the caller maps both kind spellings to Jaeger's names.
OPERATIONS = """
SELECT DISTINCT SpanName, SpanKind FROM otel_traces
WHERE ($service IS NULL OR ServiceName = $service)
ORDER BY SpanName, SpanKind
"""


def services(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Service names with spans, sorted."""
    return [str(r[0]) for r in con.execute(SERVICES).fetchall()]


def operations(con: duckdb.DuckDBPyConnection, service: str | None) -> list[tuple[str, str]]:
    """(span name, stored span kind) of one service (every service when None), sorted."""
    return [(str(r[0]), str(r[1] or "")) for r in
            con.execute(OPERATIONS, {"service": service}).fetchall()]
