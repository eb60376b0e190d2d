"""The span index in the write path and for readers (SQL and the key's design: span_index_sql.py).

Each commit indexes the spans it stored, in the same transaction (so a failed commit leaves
neither); schema migration 3 indexed the spans stored before. A reader uses the index only when
it covers every stored span: a store opened read-only before its migration, or spans inserted
into otel_traces outside the write path, send it back to the raw spans.
"""

from __future__ import annotations

from typing import Any

from telltale.store import span_index_sql as sql


def index_batches(con: Any, lo: int, hi: int) -> None:
    """Index the spans of batches lo..hi (inside the caller's transaction)."""
    con.execute(sql.FILL_BATCHES, {"lo": lo, "hi": hi})


def complete(con: Any) -> bool:
    """Whether the index exists and holds a row for every stored span."""
    if not int(con.execute(sql.EXISTS).fetchall()[0][0]):
        return False
    spans, indexed = con.execute(sql.COUNTS).fetchall()[0]
    return bool(spans == indexed)


def rebuild(con: Any) -> int:
    """Index every stored span afresh (for stores filled outside the write path, like the bench's
    generated one); returns the number of spans indexed."""
    con.begin()
    try:
        con.execute(sql.CLEAR)
        con.execute(sql.FILL_ALL)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return int(con.execute(sql.COUNTS).fetchall()[0][1])
