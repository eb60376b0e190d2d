"""The JSON path's unordered insert: it leaves no free space in the file, and always restores
DuckDB's (global) insertion-order setting."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from telltale.store import Store
from telltale.store.json_lines import unordered_insert

_INSERT = """
INSERT INTO otel_traces SELECT i, md5(i::VARCHAR), left(md5(i::VARCHAR), 16), '', '',
    'op-' || (i % 50), 'Server', 'svc-' || (i % 7), MAP {'service.name': 'svc'}, '', '',
    MAP {'k': (i % 100)::VARCHAR}, i % 1000, 'Unset', '', [], [], 1
FROM src
"""


def _free_blocks_after_unordered_insert(db: Path, vacuum: bool) -> tuple[int, int]:
    with Store(db) as store:
        con = store.con
        if vacuum:
            con.execute("RESET max_vacuum_tasks")
        # More than two row groups, in small record batches spread over both threads: each
        # thread ends with a partly filled row group.
        src = pa.table({"i": pa.array(range(300_000), pa.int64())})
        con.register("src", pa.Table.from_batches(src.to_batches(max_chunksize=2048)))
        con.begin()
        with unordered_insert(con):
            con.execute(_INSERT)
        con.commit()
        con.execute("CHECKPOINT")
        assert store.query("SELECT count(*) FROM otel_traces")[0][0] == 300_000
        free, total = store.query("SELECT sum(free_blocks), sum(total_blocks)"
                                  " FROM pragma_database_size()")[0]
    return int(free), int(total)


def test_unordered_insert_leaves_no_free_blocks(tmp_path: Path) -> None:
    free, total = _free_blocks_after_unordered_insert(tmp_path / "store.duckdb", vacuum=False)
    assert free == 0 and total > 0
    # What the store's setting prevents: a vacuuming checkpoint rewrites the partly filled row
    # groups and leaves the blocks they held free.
    free, total = _free_blocks_after_unordered_insert(tmp_path / "vacuum.duckdb", vacuum=True)
    assert free > total // 5


def test_unordered_insert_restores_order_after_a_failed_statement(tmp_path: Path) -> None:
    with Store(tmp_path / "store.duckdb") as store:
        con = store.con

        def preserved() -> bool:
            return bool(con.cursor().execute(
                "SELECT current_setting('preserve_insertion_order')").fetchall()[0][0])

        con.begin()
        with pytest.raises(duckdb.Error, match="boom"), unordered_insert(con):
            assert not preserved()
            con.execute("SELECT error('boom')")  # leaves the transaction aborted
        assert preserved()
        con.rollback()
        assert preserved()
