"""Template assignment in the write path: every committed log record gets a template id and its
parameters, in the same transaction as the record (so a failed commit leaves neither).

The miner is loaded once per database file and process and kept in memory, because loading it
costs a query and a tree build per commit. Several `Store`s in one process may write the same
file (DuckDB shares one database instance), so the cached miner is checked against the table's
totals (templates, highest id, records counted) before each use and reloaded when another writer
moved them; a rolled-back commit drops it (its in-memory changes never reached the table).

Mining works on the distinct bodies of the committed batches (grouped in DuckDB), oldest first,
then the assignment is joined back onto the records in SQL: Python touches each distinct body
once, never each row, which is also what makes re-assigning a whole store (`reindex`) fast.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from telltale.normalize.log_miner import TemplateMiner
from telltale.store import log_templates_sql as sql
from telltale.store.staging_tables import unregister

BATCHES_PER_STEP = 64  # reindex: batches per transaction (bounds memory on a large store)

_PARAMS = pa.list_(pa.string())


@dataclass
class _Cached:
    miner: TemplateMiner = field(default_factory=TemplateMiner)
    loaded: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_MINERS: dict[Path, _Cached] = {}
_MINERS_LOCK = threading.Lock()


def _entry(path: Path) -> _Cached:
    key = path.resolve()
    with _MINERS_LOCK:
        cached = _MINERS.get(key)
        if cached is None:
            cached = _MINERS[key] = _Cached()
        return cached


def forget(path: Path) -> None:
    """Drop the cached miner (after a rollback: its changes were never stored)."""
    with _MINERS_LOCK:
        _MINERS.pop(path.resolve(), None)


def _current(con: duckdb.DuckDBPyConnection, cached: _Cached) -> TemplateMiner:
    """The cached miner, reloaded when it no longer matches the table (another writer)."""
    stored = tuple(int(v) for v in con.execute(sql.SIGNATURE).fetchall()[0])
    if not cached.loaded or cached.miner.signature() != stored:
        cached.miner = TemplateMiner()
        cached.miner.load(con.execute(sql.LOAD).fetchall())
        cached.loaded = True
    return cached.miner


def assign(con: duckdb.DuckDBPyConnection, path: Path, lo: int, hi: int) -> int:
    """Assign templates to the records of batches lo..hi (inside the caller's transaction) and
    save the templates that changed. Returns the number of records assigned."""
    cached = _entry(path)
    with cached.lock:
        try:
            return _assign(con, _current(con, cached), list(range(lo, hi + 1)))
        except BaseException:
            forget(path)
            raise


def _assign(con: duckdb.DuckDBPyConnection, miner: TemplateMiner, batches: list[int]) -> int:
    which = {"lo": min(batches), "hi": max(batches), "batches": batches}
    bodies = con.execute(sql.BODIES, which).fetchall()
    if not bodies:
        return 0
    ids = [miner.add(body, first, int(n), last) for body, n, first, last in bodies]
    # Parameters once every body is mined: identical bodies get identical parameters.
    params = [miner.parameters(tid, body) for tid, (body, *_rest) in zip(ids, bodies, strict=True)]
    view = pa.table({"Body": [b[0] for b in bodies], "TemplateId": pa.array(ids, pa.int32()),
                     "Params": pa.array(params, _PARAMS)})
    con.register("tt_log_assign_view", view)
    try:
        con.execute(sql.INSERT_OF, which)
    finally:
        unregister(con, "tt_log_assign_view")
    _save(con, miner)
    return sum(int(b[1]) for b in bodies)


def _save(con: duckdb.DuckDBPyConnection, miner: TemplateMiner) -> None:
    save_templates(con, miner.rows(miner.take_dirty()))


def save_templates(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    """Insert or update these template rows (`TemplateMiner.rows`) in one statement."""
    if not rows:
        return
    view = pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.int32()), ("template", pa.string()), ("token_count", pa.int32()),
        ("first_seen", pa.int64()), ("last_seen", pa.int64()), ("count", pa.int64())]))
    con.register("tt_log_templates_view", view)
    try:
        con.execute(sql.UPSERT_VIEW)
    finally:
        unregister(con, "tt_log_templates_view")


def template_count(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute(sql.TEMPLATE_COUNT).fetchall()[0][0])


def reassign(con: duckdb.DuckDBPyConnection, path: Path, *, all_records: bool,
             batches_per_step: int = BATCHES_PER_STEP) -> tuple[int, int]:
    """Assign templates to stored batches lacking them (or to all: `all_records`), a step of
    batches per transaction. Returns (records, batches)."""
    batches = [int(b) for b, _n in con.execute(sql.LOG_BATCHES, {"all": all_records}).fetchall()]
    # Re-assigning everything recounts from zero, so it is one transaction: a crash half-way
    # must not leave counters that match neither the old nor the new assignment.
    step_size = max(len(batches), 1) if all_records else batches_per_step
    cached = _entry(path)
    records = 0
    with cached.lock:
        for start in range(0, len(batches), step_size):
            step = batches[start:start + step_size]
            con.begin()
            try:
                miner = _current(con, cached)
                if all_records:
                    miner.reset_counts()
                    con.execute(sql.DELETE_ALL_OF)
                for chunk in range(0, len(step), batches_per_step):
                    records += _assign(con, miner, step[chunk:chunk + batches_per_step])
                _save(con, miner)  # counters reset above, even for templates no record has now
                con.commit()
            except BaseException:
                con.rollback()
                forget(path)
                raise
    return records, len(batches)

