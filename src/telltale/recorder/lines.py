"""The spool's line format (version 2): a header object per segment, then one JSON array per entry.

The hot path (`record`, `span`) appends a tuple; the flusher writes it with one `orjson.dumps`
and nothing else, so the tuple *is* the line. What is the same for every line of a process
sits in the segment's header:

    {"telltale.recorder":1,"kind":"segment","v":2,"service":"ci","prefix":"9f2c1a3b","base":1732…}

* An id is `prefix` (8 hex digits, random per process) followed by a counter (8 hex digits);
  a line holds the counter as a number, or the whole id as a string (from another process:
  a span still open when the process forked). The API hands out the 16-digit string.
* Times are nanoseconds after `base` (Unix ns), so a line carries 10–14 digits, not 19.
* `ctx` says where an entry sits: 0 for a root (its trace id is its own id, padded to 32
  digits); a number `p` for a child of the root span `p`; `[trace, parent]` deeper down (each a
  number, or a string when it is a whole id / trace id).

    ["e", id, ctx, name, start, attrs]                       an event (`record`)
    ["e", id, ctx, name, start, attrs, status]               … whose attrs hold an outcome
    ["s", id, ctx, name, start, duration, attrs, status]     a span
    ["s", …, status, outcome]                                … with an outcome word
    ["s", …, "error", null, error.type, message]             … that ended by an exception
    ["u", "id", time, attrs]                                 an update (`update`)
    ["u", "id", time, attrs, outcome, status]                … with an outcome

Version-1 lines (one object per line, every field named) are still read by ingest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

MARKER = "telltale.recorder"  # the header's first key: how format detection knows a segment
VERSION = 2
TRACE_PAD = "0" * 16  # a root's trace id: its span id, padded to 32 hex digits
ERROR_OUTCOMES = frozenset({"error", "failure", "failed", "fail", "timeout", "crash", "aborted"})
_ATTRS_AT = {"e": 5, "s": 6, "u": 3}  # where each kind of row keeps its attributes
_REPR_LIMIT = 1000

Row = tuple[Any, ...]
Ctx = Any  # 0 | int | tuple[int | str, int | str], as described above


def status_of(outcome: object) -> str:
    return "error" if str(outcome).lower() in ERROR_OUTCOMES else "ok"


def full_id(prefix: int, n: int) -> str:
    """The 16-hex-digit id of counter `n` under `prefix` (the high 32 bits, top bit set)."""
    return hex(prefix | n)[2:]


def header(service: str, prefix: int, base: int, host: str, pid: int) -> bytes:
    return orjson.dumps({MARKER: 1, "kind": "segment", "v": VERSION, "service": service,
                         "prefix": format(prefix >> 32, "08x"), "base": base, "host": host,
                         "pid": pid})


def ctx_with_ids(ctx: Ctx, prefix: int) -> Ctx:
    """`ctx` with its counters made whole ids under `prefix`: what a forked child, whose own
    prefix differs, must write for a span its parent process opened."""
    if ctx == 0:
        return 0
    if isinstance(ctx, int):
        root = full_id(prefix, ctx)
        return (TRACE_PAD + root, root)
    trace, parent = ctx
    return (trace if isinstance(trace, str) else TRACE_PAD + full_id(prefix, trace),
            parent if isinstance(parent, str) else full_id(prefix, parent))


def encode(rows: list[Row], counts: dict[str, int]) -> tuple[bytes, int]:
    """The rows as JSON lines (each ending in a newline) in one bytes object, and how many there
    are. The fast path is one C loop; when a value is not JSON-able, the rows are redone one by
    one: such values are written as their repr (counted in `counts["coerced_values"]`), a row
    that cannot be written at all is counted as `dropped_unserialisable`."""
    try:
        lines = list(map(orjson.dumps, rows))
    except Exception:
        lines = [line for line in (_encode_carefully(row, counts) for row in rows) if line is not None]
    count = len(lines)
    lines.append(b"")  # the last newline, without another copy
    # One object per chunk: orjson sizes each line's buffer at 1 KiB first, so keeping thousands
    # of small lines alive would fragment the heap (and fault in fresh pages) far more.
    return b"\n".join(lines) if count else b"", count


def _encode_carefully(row: Row, counts: dict[str, int]) -> bytes | None:
    coerced = 0

    def coerce(value: object) -> str:
        nonlocal coerced
        coerced += 1
        return repr(value)[:_REPR_LIMIT]

    try:
        line = orjson.dumps(row, default=coerce, option=orjson.OPT_NON_STR_KEYS)
    except Exception:  # e.g. an int beyond 64 bits (orjson does not ask `default`): value by value
        coerced, at = 0, _ATTRS_AT.get(row[0], -1)
        try:
            line = orjson.dumps([{str(k): _as_text(x, coerce) for k, x in v.items()}
                                 if i == at and isinstance(v, dict) else _as_text(v, coerce)
                                 for i, v in enumerate(row)])
        except Exception:
            counts["dropped_unserialisable"] = counts.get("dropped_unserialisable", 0) + 1
            return None
    if coerced:
        counts["coerced_values"] = counts.get("coerced_values", 0) + coerced
    return line


def _as_text(value: object, coerce: Callable[[object], str]) -> object:
    try:
        orjson.dumps(value)
    except Exception:
        return coerce(value)
    return value
