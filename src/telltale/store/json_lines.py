"""OTLP JSON request lines in the write path (the SQL is in store/otlp_json.py).

A chunk of trace lines is first tried in one statement straight into `otel_traces`
(`store_trace_lines`); when anything in it needs quarantine that raises
`staging_tables.NeedsStaging`, the caller rolls the transaction back and commits again with the
lines staged (`stage_lines`), where rejected records and torn lines are quarantined with their
positions. Log lines are always staged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from telltale.model import QuarantineReason
from telltale.normalize.staging import PART, with_part
from telltale.store import otlp_json
from telltale.store.staging_tables import (
    concat,
    global_setting,
    raise_fallback,
    stored_per_part,
    unregister,
)

VIEW = "tt_lines_view"


def register_lines(con: duckdb.DuckDBPyConnection, lines: list[pa.Table],
                   skipped: list[int] | None = None) -> list[int]:
    """Register request lines as the view the SQL reads, without those of the `skipped` parts
    (already ingested: the statements have no filter); returns the parts registered. Small
    record batches let DuckDB spread the JSON work over all threads."""
    tbl = concat(lines)
    tbl = tbl if PART in tbl.column_names else with_part(tbl, 0)
    if skipped:
        known = pa.array(skipped, tbl.schema.field(PART).type)
        tbl = tbl.filter(pc.invert(pc.is_in(tbl[PART], known)))
    con.register(VIEW, pa.Table.from_batches(tbl.to_batches(max_chunksize=16), tbl.schema))
    return sorted(int(p) for p in pc.unique(tbl[PART]).to_pylist())


@contextlib.contextmanager
def unordered_insert(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Let DuckDB insert the rows of one statement in any order. Kept in order, rows from many
    small record batches are merged into row groups on the way (361 k spans from JSON lines:
    2.25 s -> 1.95 s without). The store never relies on physical row order (readers ORDER BY)
    and its checkpoints do not vacuum (duck.py), so the partly filled row groups an unordered
    insert leaves are not rewritten into new blocks, leaving the old ones free."""
    with global_setting(con, "preserve_insertion_order", False):
        yield


def store_trace_lines(con: duckdb.DuckDBPyConnection, lines: list[pa.Table],
                      params: dict[str, Any], skipped: list[int]) -> dict[int, int]:
    """Trace lines validated and stored in one statement; the spans stored per part. Raises
    NeedsStaging when anything in them needs quarantine."""
    parts = register_lines(con, lines, skipped)
    try:
        with unordered_insert(con):
            raise_fallback(con, otlp_json.STORE_SPANS,
                           {k: params[k] for k in ("batch", "min_ts", "max_ts", "max_bytes")})
    finally:
        unregister(con, VIEW)
    return stored_per_part(con, params["batch"], parts)


def stage_lines(con: duckdb.DuckDBPyConnection, lines: list[pa.Table], table: str,
                stage_sql: str, suspects_sql: str) -> None:
    """Every record of the lines into the staging table, torn lines quarantined whole."""
    register_lines(con, lines)
    try:
        con.execute(stage_sql)
        _requarantine_suspects(con, table, suspects_sql)
    finally:
        unregister(con, VIEW)


def _requarantine_suspects(con: duckdb.DuckDBPyConnection, table: str, suspects_sql: str) -> None:
    """Lines that staged fewer records than their text holds are quarantined whole."""
    for part, line_no, text, staged in con.execute(suspects_sql).fetchall():
        line = text.rstrip("\n")  # lines may keep their end (normalize/otlp_json.line_array)
        expected = otlp_json.well_formed_count(line, table)
        if expected is not None and staged >= expected:
            continue  # all its records staged (or none to keep): the key count misled
        con.execute(otlp_json.requarantine_line(table), {"part": part, "line": line_no})
        con.execute(otlp_json.line_defect_row(table), {
            "pos": f"line {line_no}", "bytes": len(line), "part": part, "line": line_no,
            "defect": QuarantineReason.BAD_SHAPE.value, "raw": line})
