"""Arrow column builders shared by every generator: formatted strings, attribute maps, lists.

Everything here works on whole arrays (Arrow compute kernels or numpy), never row by row, so
building a column costs the same per row for a thousand spans or ten million.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from telltale.normalize.staging import ATTRS

Piece: TypeAlias = str | pa.Array
NULL = pa.scalar(None, pa.string())


def const(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)


def ints(values: npt.NDArray[np.integer] | Sequence[int]) -> pa.Array:
    """Decimal strings of integers."""
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def concat(pieces: Sequence[Piece], n: int) -> pa.Array:
    """Element-wise concatenation of literal strings and string arrays of length n."""
    arrays = [p for p in pieces if not isinstance(p, str)]
    if not arrays:
        return const("".join(p for p in pieces if isinstance(p, str)), n)
    args = [pa.scalar(p, pa.string()) if isinstance(p, str) else p for p in pieces]
    return pc.binary_join_element_wise(*args, "")


def render(template: str, values: Mapping[str, pa.Array], n: int) -> pa.Array:
    """Fill a `str.format`-style template ("/api/products/{product}") from per-row arrays.

    Unknown fields stay literal, so route templates such as "/product/{id}" pass through.
    """
    pieces: list[Piece] = []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        if literal:
            pieces.append(literal)
        if field is not None:
            pieces.append(values[field] if field in values else "{" + field + "}")
    return concat(pieces, n)


def choose(codes: npt.NDArray[np.integer], labels: Sequence[str]) -> pa.Array:
    """labels[codes[i]] for every row."""
    return pa.array(list(labels), pa.string()).take(pa.array(np.asarray(codes, dtype=np.int64)))


def where(mask: npt.NDArray[np.bool_], yes: Piece, no: Piece, n: int) -> pa.Array:
    yes_arr = const(yes, n) if isinstance(yes, str) else yes
    no_arr = const(no, n) if isinstance(no, str) else no
    return pc.if_else(pa.array(mask), yes_arr, no_arr)


def offsets_from_lengths(lengths: npt.NDArray[np.integer]) -> npt.NDArray[np.int32]:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def attr_map(columns: Mapping[str, pa.Array], n: int) -> pa.Array:
    """A map<string,string> per row from one array per key; null values leave the key out."""
    if not columns:
        return pa.MapArray.from_arrays(
            np.zeros(n + 1, dtype=np.int32), pa.array([], pa.string()), pa.array([], pa.string())
        )
    k = len(columns)
    order = (np.arange(k)[None, :] * n + np.arange(n)[:, None]).ravel()
    items = pa.concat_arrays([c.cast(pa.string()) for c in columns.values()]).take(order)
    keys = pa.array(list(columns), pa.string()).take(np.tile(np.arange(k), n))
    valid = np.asarray(items.is_valid()).reshape(n, k)
    if valid.all():
        offsets = np.arange(0, n * k + 1, k, dtype=np.int32)
    else:
        keep = pa.array(valid.ravel())
        keys, items = keys.filter(keep), items.filter(keep)
        offsets = offsets_from_lengths(valid.sum(axis=1))
    return pa.MapArray.from_arrays(pa.array(offsets), keys, items).cast(ATTRS)


def map_parts(maps: pa.Array) -> tuple[npt.NDArray[np.int32], pa.Array, pa.Array]:
    """(offsets from 0, keys, items) of a possibly sliced map or list array."""
    if isinstance(maps, pa.ChunkedArray):
        maps = maps.combine_chunks()
    offsets = np.asarray(maps.offsets, dtype=np.int32)
    first, last = int(offsets[0]), int(offsets[-1])
    if isinstance(maps, pa.MapArray):
        return offsets - first, maps.keys.slice(first, last - first), maps.items.slice(
            first, last - first
        )
    values = maps.values.slice(first, last - first)
    return offsets - first, values, values


def lists(offsets: npt.NDArray[np.int32], values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def utf8_lengths(arr: pa.Array) -> npt.NDArray[np.int64]:
    return np.asarray(pc.binary_length(arr).fill_null(0), dtype=np.int64)


def map_bytes(maps: pa.Array) -> npt.NDArray[np.int64]:
    """Bytes of keys plus values per row: the store's size measure for attributes."""
    offsets, keys, items = map_parts(maps)
    entry = utf8_lengths(keys) + utf8_lengths(items)
    sums = np.concatenate([[0], np.cumsum(entry)])
    return np.asarray(sums[offsets[1:]] - sums[offsets[:-1]], dtype=np.int64)


def table(schema: pa.Schema, columns: Mapping[str, pa.Array], n: int) -> pa.Table:
    """A staged table by column name; staging columns we do not produce are null."""
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise KeyError(f"not in the staging schema: {sorted(unknown)}")
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def positions(prefix: str, n: int) -> pa.Array:
    """`Pos` values "sim span 1", "sim span 2", ... for staged rows."""
    return concat([prefix, ints(np.arange(1, n + 1))], n)


def lognormal_ns(
    rng: np.random.Generator, median_ms: float, sigma: float, n: int
) -> npt.NDArray[np.float64]:
    """Durations in ns with the given median: latency is right-skewed, never negative."""
    return rng.lognormal(np.log(median_ms * 1e6), sigma, n)
