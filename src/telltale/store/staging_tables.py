"""Staging tables: Arrow staging schemas as DuckDB temp tables, how staged parts concatenate,
and dropping the Arrow views that feed them; and how a one-statement path (OTLP JSON lines,
OTLP protobuf) hands a commit over to staging."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb
import pyarrow as pa

from telltale.model import MetricType
from telltale.normalize.staging import PART, with_part

_ARROW_TO_DUCK = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.uint64(): "UBIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
}


def duck_type(t: pa.DataType) -> str:
    if t in _ARROW_TO_DUCK:
        return _ARROW_TO_DUCK[t]
    if pa.types.is_map(t):
        return f"MAP({duck_type(t.key_type)}, {duck_type(t.item_type)})"
    if pa.types.is_list(t):
        return f"{duck_type(t.value_type)}[]"
    if pa.types.is_struct(t):
        inner = ", ".join(f"{f.name} {duck_type(f.type)}" for f in t)
        return f"STRUCT({inner})"
    raise TypeError(f"no DuckDB type for {t}")


def create_temp(name: str, arrow_schema: pa.Schema) -> str:
    """A staging table: the Arrow schema's columns, then which part of a grouped commit each
    row belongs to and (for engine-decoded JSON lines) its line number."""
    cols = ", ".join(f'"{f.name}" {duck_type(f.type)}' for f in arrow_schema)
    return f"CREATE OR REPLACE TEMP TABLE {name} ({cols}, Part INTEGER, LineNo BIGINT)"


# Raised (SQL `error()`) by a one-statement path that meets a record to quarantine: the
# transaction is rolled back and committed again with the records staged, which quarantines
# them with their positions (store/duck.py). So both ways store exactly the same rows.
FALLBACK = "telltale: this commit needs the staging path"


def raise_where(condition: str, column: str) -> str:
    """`SELECT *`'s REPLACE clause that raises FALLBACK on the rows where `condition` holds: a
    one-statement path checks in a projection (as a WHERE, the check made DuckDB's unordered
    insert twice as slow)."""
    return f"REPLACE (CASE WHEN {condition} THEN error('{FALLBACK}') ELSE {column} END AS {column})"


class NeedsStaging(Exception):
    """A one-statement path met something to quarantine (the transaction must roll back)."""


def raise_fallback(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> None:
    """Run a one-statement path's SQL; NeedsStaging when it raised FALLBACK."""
    try:
        con.execute(sql, params)
    except duckdb.Error as exc:
        if FALLBACK in str(exc):
            raise NeedsStaging from exc
        raise


def stored_per_part(con: duckdb.DuckDBPyConnection, batch: int,
                    parts: list[int]) -> dict[int, int]:
    """Spans a one-statement path stored for these parts of the commit whose batches start at
    `batch` (only these: another path may have stored spans of other parts before it)."""
    return {int(p): int(n) for p, n in con.execute(
        "SELECT BatchId - $batch, count(*) FROM otel_traces WHERE BatchId >= $batch"
        " AND list_contains($parts, BatchId - $batch) GROUP BY ALL",
        {"batch": batch, "parts": parts}).fetchall()}


@contextlib.contextmanager
def global_setting(con: duckdb.DuckDBPyConnection, name: str, value: bool | int) -> Iterator[None]:
    """A global DuckDB setting (`name`: the store's own constant) changed for the statements
    inside, then put back as it was, also when one of them failed and left this connection's
    transaction aborted: a fresh cursor of the same database puts it back then."""
    old = con.execute("SELECT current_setting(?)", [name]).fetchall()[0][0]

    def literal(v: object) -> str:  # a bool or an integer, never text from outside
        return str(v).lower() if isinstance(v, bool) else str(int(str(v)))

    con.execute(f"SET {name} = {literal(value)}")
    try:
        yield
    finally:
        with contextlib.closing(con.cursor()) as fresh:
            fresh.execute(f"SET {name} = {literal(old)}")


def staging_names() -> list[str]:
    return ["stg_spans", "stg_logs", *(f"stg_metrics_{k}" for k in MetricType)]


def concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate staged tables, some tagged with their part and some not (part 0)."""
    if any(PART in t.column_names for t in tables) and not all(
            PART in t.column_names for t in tables):
        tables = [t if PART in t.column_names else with_part(t, 0) for t in tables]
    return pa.concat_tables(tables)


def unregister(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a registered Arrow view; in an aborted transaction this fails, and must not hide
    the error that aborted it (the view is replaced on next use anyway)."""
    with contextlib.suppress(duckdb.Error):
        con.unregister(name)
