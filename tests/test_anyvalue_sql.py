"""The SQL fast path for double attribute values prints exactly what `go_float` prints."""

from __future__ import annotations

import random
import struct

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from telltale.normalize.anyvalue import go_float
from telltale.store.otlp_json import FLOAT_UDF_NAME, go_float_sql


def _mismatches(values: list[float]) -> list[tuple[float, str, str]]:
    con = duckdb.connect()
    con.create_function(FLOAT_UDF_NAME, go_float, ["DOUBLE"], "VARCHAR", side_effects=False)
    con.register("t", pa.table({"x": pa.array(values, pa.float64())}))
    rows = con.execute(f"SELECT x, {go_float_sql('x')} FROM t").fetchall()  # noqa: S608 (constant)
    con.close()
    return [(x, sql, go_float(x)) for x, sql in rows if sql != go_float(x)]


def test_wide_sample_of_doubles_prints_as_go_does() -> None:
    rng = random.Random(11)
    values = [0.0, -0.0, 1e-4, -1e-4, 9.999999999999999e-05, 1e15, 1e15 - 0.5, 1e18, 2.0**53,
              float("inf"), float("-inf"), float("nan"), 0.1, 123456.789, 1e-7]
    for _ in range(20_000):
        values += [rng.random(), round(rng.uniform(-1e4, 1e4), rng.randint(0, 7)),
                   struct.unpack("d", rng.randbytes(8))[0],
                   rng.uniform(-1, 1) * 10.0 ** rng.randint(-9, 22)]
    assert _mismatches(values) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=200))
def test_any_double_prints_as_go_does(values: list[float]) -> None:
    assert _mismatches(values) == []
