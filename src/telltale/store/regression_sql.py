"""SQL for regression detection: spans split into two sides (baseline 0, current 1) per operation.

A side is a bound SQL condition built here from a `Scope` (two windows), a service's two
versions, or two values of one attribute; the analysis never sees SQL text. Per-side duration
samples are capped with a deterministic pseudo-random order (a hash of the span ids), so the
same store always gives the same test statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import is_error, is_kind, span_filter

# Where a request's work enters a service: server and consumer spans, and trace roots (internal
# roots of background work, CI runs, agent orchestrations). Clients only repeat the callee.
ENTRY_SPANS = f"({is_kind('Server')} OR {is_kind('Consumer')} OR ParentSpanId = '')"


@dataclass(frozen=True)
class Sides:
    """`side`: a SQL expression that is 0 (baseline), 1 (current) or NULL (neither); `where`: a
    plain filter covering both sides, so the engine can skip row groups before the CASE."""

    side: str
    where: str
    params: dict[str, Any]


def window_sides(baseline: Scope, current: Scope) -> Sides:
    a_sql, a_params = span_filter(baseline, prefix="a")
    b_sql, b_params = span_filter(current, prefix="b")
    both = Scope(None if baseline.since is None or current.since is None
                 else min(baseline.since, current.since),
                 None if baseline.until is None or current.until is None
                 else max(baseline.until, current.until))
    where, params = span_filter(both, prefix="ab")
    return Sides(f"CASE WHEN {a_sql} THEN 0 WHEN {b_sql} THEN 1 END", where,
                 {**a_params, **b_params, **params})


def version_sides(scope: Scope, services: Sequence[str], old: Sequence[str],
                  new: Sequence[str]) -> Sides:
    """Per service, its `old` version is the baseline and its `new` one the current side."""
    where, params = span_filter(scope)
    version = "ResourceAttributes['service.version']"
    pick = "list_position($v_services, ServiceName)"
    side = f"CASE WHEN {version} = $v_old[{pick}] THEN 0 WHEN {version} = $v_new[{pick}] THEN 1 END"
    return Sides(side, where, {**params, "v_services": list(services), "v_old": list(old),
                        "v_new": list(new)})


def attribute_sides(scope: Scope, key: str, baseline: str, current: str) -> Sides:
    """Spans whose resource (else span) attribute `key` is `baseline` vs `current`."""
    where, params = span_filter(scope)
    value = "coalesce(ResourceAttributes[$attr_key], SpanAttributes[$attr_key])"
    side = f"CASE WHEN {value} = $attr_a THEN 0 WHEN {value} = $attr_b THEN 1 END"
    return Sides(side, where, {**params, "attr_key": key, "attr_a": baseline, "attr_b": current})


VERSIONS = """
SELECT ServiceName, ResourceAttributes['service.version'] AS version, min(Timestamp) AS first_ns,
    count(*) AS spans
FROM otel_traces WHERE {where} AND ResourceAttributes['service.version'] IS NOT NULL
GROUP BY ALL ORDER BY ServiceName, first_ns, version
"""


def versions(con: Any, scope: Scope) -> list[tuple[str, str, int, int]]:
    """(service, version, first seen ns, spans) in order of first appearance per service."""
    where, params = span_filter(scope)
    rows: list[tuple[str, str, int, int]] = con.execute(
        VERSIONS.replace("{where}", where), params).fetchall()
    return rows


# Exact p50/p95 and error counts on every span of each side (not the sample).
SUMMARY = """
WITH s AS (
    SELECT ServiceName, SpanName, Duration, {error} AS failed, {side} AS side
    FROM otel_traces WHERE {entry} AND {where}
)
SELECT ServiceName, SpanName, side, count(*) AS n, count(*) FILTER (WHERE failed) AS errors,
    quantile_cont(Duration, 0.5) AS p50, quantile_cont(Duration, 0.95) AS p95
FROM s WHERE side IS NOT NULL
GROUP BY ALL ORDER BY ServiceName, SpanName, side
"""

# Up to $cap durations per operation and side, chosen by a hash of the span's ids.
SAMPLES = """
WITH s AS (
    SELECT ServiceName, SpanName, Duration, {side} AS side, hash(TraceId, SpanId) AS h
    FROM otel_traces WHERE {entry} AND {where}
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY ServiceName, SpanName, side ORDER BY h) AS rn
    FROM s WHERE side IS NOT NULL
)
SELECT ServiceName, SpanName, side, list(Duration ORDER BY Duration) AS durations
FROM ranked WHERE rn <= $cap
GROUP BY ALL ORDER BY ServiceName, SpanName, side
"""


def _sql(template: str, sides: Sides, entry_only: bool) -> str:
    return (template.replace("{side}", sides.side).replace("{where}", sides.where)
            .replace("{error}", is_error())
            .replace("{entry}", ENTRY_SPANS if entry_only else "true"))


def summary(con: Any, sides: Sides, entry_only: bool) -> list[tuple[Any, ...]]:
    """(service, operation, side, spans, errors, p50 ns, p95 ns), ordered."""
    rows: list[tuple[Any, ...]] = con.execute(_sql(SUMMARY, sides, entry_only),
                                              sides.params).fetchall()
    return rows


def samples(con: Any, sides: Sides, entry_only: bool,
            cap: int) -> dict[tuple[str, str, int], npt.NDArray[np.float64]]:
    """Sorted duration samples (ns, as float) per (service, operation, side)."""
    table: pa.Table = con.sql(_sql(SAMPLES, sides, entry_only),
                              params={**sides.params, "cap": cap}).to_arrow_table()
    lists = table.column("durations").combine_chunks()
    flat = np.asarray(lists.values.to_numpy(zero_copy_only=False), dtype=np.float64)
    offsets = np.asarray(lists.offsets.to_numpy(zero_copy_only=False))
    keys = zip(table.column("ServiceName").to_pylist(), table.column("SpanName").to_pylist(),
               table.column("side").to_pylist(), strict=True)
    return {(svc, op, int(side)): flat[offsets[i]:offsets[i + 1]]
            for i, (svc, op, side) in enumerate(keys)}
