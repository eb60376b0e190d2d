"""Seeded randomness and ids: unique, reproducible, and cheap to make by the million.

Ids come from splitmix64 over a counter rather than from raw random bits: splitmix64 is a
bijection on 64-bit integers, so distinct counters give distinct ids (no birthday collisions at
millions of spans) while still looking random. Hex formatting works on byte views of whole
arrays, and Arrow string arrays are built straight from the resulting buffers.
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt
import pyarrow as pa

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: U64) -> U64:
    """The splitmix64 finaliser, element-wise (array arithmetic wraps silently in numpy)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def rng_for(seed: int, component: str) -> np.random.Generator:
    """An independent generator per component, so changing one part leaves the others' output."""
    return np.random.default_rng([seed, zlib.crc32(component.encode())])


class IdAllocator:
    """Hands out unique non-zero 64-bit ids; one allocator per id space (spans, traces)."""

    def __init__(self, seed: int, space: str) -> None:
        base = np.array([seed * 1_000_003 + zlib.crc32(space.encode())], dtype=np.uint64)
        self._base = splitmix64(base)[0] & np.uint64(0xFFFF_FFFF_0000_0000)
        self._next = 0

    def take(self, n: int) -> U64:
        counters = self._base + np.arange(self._next, self._next + n, dtype=np.uint64)
        self._next += n
        ids = splitmix64(counters)
        # Zero means "no id" in OTLP; the bijection maps exactly one counter there.
        ids[ids == 0] = np.uint64(1)
        return ids


class TraceIds:
    """128-bit trace ids as (hi, lo) pairs; hi alone is unique, so the pair is too."""

    def __init__(self, seed: int) -> None:
        self._hi = IdAllocator(seed, "trace-hi")
        self._lo = IdAllocator(seed, "trace-lo")

    def take(self, n: int) -> tuple[U64, U64]:
        return self._hi.take(n), self._lo.take(n)


def hex_chars(values: U64) -> npt.NDArray[np.uint8]:
    """(n, 16) ASCII lower-case hex of big-endian uint64 values."""
    raw = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.empty((raw.shape[0], 16), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return out


def _fixed_width_strings(chars: npt.NDArray[np.uint8], present: Bools | None = None) -> pa.Array:
    """Arrow strings from an (n, w) char matrix; rows not `present` become empty strings."""
    n, width = chars.shape
    lengths = np.full(n, width, dtype=np.int32) if present is None else present * np.int32(width)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = chars if present is None else chars[present]
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(np.ascontiguousarray(data).tobytes())
    )


def span_id_strings(ids: U64) -> pa.Array:
    """16-char hex span ids; 0 (no parent, no link) becomes ""."""
    return _fixed_width_strings(hex_chars(ids), ids != 0)


def trace_id_strings(hi: U64, lo: U64) -> pa.Array:
    """32-char hex trace ids; a zero hi half (no link) becomes ""."""
    chars = np.concatenate([hex_chars(hi), hex_chars(lo)], axis=1)
    return _fixed_width_strings(chars, hi != 0)
