"""A torn OTLP/JSON traces file whose broken lines are known exactly.

Lines hold the spans of the earliest traces the OTLP spans hold whole (ids reversed, so they
never collide with the main files), split evenly. A seeded choice of lines is then damaged the
ways real files get damaged: cut mid-write, overwritten with junk, mis-encoded, glued to the
next line, or valid JSON of the wrong shape. Each kind maps to the quarantine reason a correct
reader reports for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telltale.model import QuarantineReason
from telltale.sim.ids import I64
from telltale.sim.spans import orphan_mask
from telltale.sim.write_json import render_lines

BROKEN_FILE = "traces_broken.jsonl"
KINDS: dict[str, QuarantineReason] = {
    "truncated": QuarantineReason.UNPARSABLE,
    "garbage": QuarantineReason.UNPARSABLE,  # printable junk, e.g. a stray log line
    "binary": QuarantineReason.BAD_ENCODING,  # random bytes, never valid UTF-8
    "invalid_utf8": QuarantineReason.BAD_ENCODING,
    "nul_byte": QuarantineReason.UNPARSABLE,
    "syntax_error": QuarantineReason.UNPARSABLE,
    "concatenated": QuarantineReason.UNPARSABLE,
    "empty_object": QuarantineReason.BAD_SHAPE,
    "wrong_shape": QuarantineReason.BAD_SHAPE,
}
_WRONG_SHAPES = (b"[]", b'{"resourceSpans":"none"}', b'"resourceSpans"', b'{"resource_spans":[]}')
# Bytes that never split a line, whatever line reader is used.
_BYTES = np.array([b for b in range(256) if b not in b"\n\r\x0b\x0c\x1c\x1d\x1e\x85"],
                  dtype=np.uint8)
_PRINTABLE = np.arange(0x20, 0x7F, dtype=np.uint8)


@dataclass(frozen=True)
class BrokenPlan:
    rows: I64  # span table rows, in file order
    offsets: I64  # line boundaries into rows
    kinds: dict[int, str]  # 1-based line number → damage kind
    seed: int


def plan(spans: pa.Table, lines: int, broken: int, per_line: int, seed: int,
         exclude_traces: pa.Array | None = None) -> BrokenPlan:
    """The earliest traces' rows, leaving out `exclude_traces` (traces `spans` holds only part
    of), split into lines, and which lines to damage how."""
    if not 0 <= broken <= lines:
        raise ValueError(f"broken lines ({broken}) must be between 0 and lines ({lines})")
    groups = spans.select(["TraceId", "StartNs"]).group_by("TraceId", use_threads=False) \
        .aggregate([("StartNs", "min"), ("StartNs", "count")])
    if exclude_traces is not None and len(exclude_traces):
        groups = groups.filter(pc.invert(pc.is_in(groups.column("TraceId"),
                                                  value_set=exclude_traces)))
    first = groups.column("StartNs_min").to_numpy()
    order = np.lexsort((np.asarray(groups.column("TraceId")), first))
    counts = groups.column("StartNs_count").to_numpy()[order]
    enough = int(np.searchsorted(np.cumsum(counts), lines * per_line)) + 1
    chosen = groups.column("TraceId").take(pa.array(order[:enough]))
    rows = np.flatnonzero(np.asarray(pc.is_in(spans.column("TraceId"), value_set=chosen)))
    if len(rows) < lines:
        raise ValueError(f"only {len(rows)} spans for {lines} lines; simulate a longer window")
    offsets = (np.arange(lines + 1) * len(rows)) // lines
    rng = np.random.default_rng([seed, 404])
    damaged = np.sort(rng.choice(lines, broken, replace=False)) + 1
    kinds = [list(KINDS)[i % len(KINDS)] for i in range(broken)]
    rng.shuffle(kinds)
    return BrokenPlan(rows.astype(np.int64), offsets.astype(np.int64),
                      {int(line): kind for line, kind in zip(damaged, kinds, strict=True)}, seed)


def subset(spans: pa.Table, p: BrokenPlan) -> pa.Table:
    """The file's spans with reversed hex ids (a bijection, so parent links still hold)."""
    t = spans.take(pa.array(p.rows))
    for name in ("TraceId", "SpanId", "ParentSpanId"):
        t = t.set_column(t.schema.get_field_index(name), name, pc.utf8_reverse(t.column(name)))
    return t


def truth(spans: pa.Table, p: BrokenPlan) -> dict[str, Any]:
    lines = len(p.offsets) - 1
    sizes = np.diff(p.offsets)
    good = np.ones(lines, dtype=bool)
    good[[line - 1 for line in p.kinds]] = False
    keep = np.repeat(good, sizes)
    good_spans = subset(spans, p).filter(pa.array(keep))
    reasons = {line: KINDS[kind].value for line, kind in p.kinds.items()}
    return {
        "file": BROKEN_FILE,
        "lines": lines,
        "broken_lines": sorted(p.kinds),
        "unparsable_lines": sorted(k for k, v in p.kinds.items()
                                   if v not in ("empty_object", "wrong_shape")),
        "bad_shape_lines": sorted(k for k, v in p.kinds.items()
                                  if v in ("empty_object", "wrong_shape")),
        "kinds": {str(k): v for k, v in sorted(p.kinds.items())},
        "expected_reasons": {str(k): v for k, v in sorted(reasons.items())},
        "good_lines": int(good.sum()),
        "good_spans": int(sizes[good].sum()),
        "spans_in_broken_lines": int(sizes[~good].sum()),
        "good_orphans": int(orphan_mask(good_spans).sum()),
        "start_ns": pc.min(spans.column("StartNs").take(pa.array(p.rows))).as_py(),
        "end_ns": pc.max(spans.column("EndNs").take(pa.array(p.rows))).as_py(),
    }


def render(spans: pa.Table, p: BrokenPlan) -> list[bytes]:
    text = render_lines(subset(spans, p), p.offsets, "traces").to_pylist()
    out = []
    for number, line in enumerate(text, start=1):
        raw = line.encode()
        kind = p.kinds.get(number)
        if kind is not None:
            raw = _damage(raw, kind, np.random.default_rng([p.seed, number]))
            if _reason(raw) is not KINDS[kind]:
                raise AssertionError(f"line {number}: damage {kind} did not take")
        elif _reason(raw) is not None:
            raise AssertionError(f"line {number} should be a valid request")
        out.append(raw)
    return out


def write(spans: pa.Table, p: BrokenPlan, path: Path) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in render(spans, p)))
    return path


def _damage(line: bytes, kind: str, rng: np.random.Generator) -> bytes:
    name = line.find(b'"name":"') + len(b'"name":"')
    if kind == "truncated":
        return line[: int(rng.integers(1, len(line) - 1))]
    if kind == "garbage":
        return b"#" + rng.choice(_PRINTABLE, int(rng.integers(16, 300))).tobytes()
    if kind == "binary":
        return b"\xff" + rng.choice(_BYTES, int(rng.integers(16, 300))).tobytes()
    if kind == "invalid_utf8":
        return line[:name] + b"\xff\xfe" + line[name:]
    if kind == "nul_byte":
        return line[:name] + b"\x00" + line[name:]
    if kind == "syntax_error":
        return line.replace(b'"spans":[', b'"spans":[,', 1)
    if kind == "concatenated":
        return line + line  # a lost newline glues two requests together
    if kind == "empty_object":
        return b"{}"
    return _WRONG_SHAPES[int(rng.integers(0, len(_WRONG_SHAPES)))]


def _reason(raw: bytes) -> QuarantineReason | None:
    """What a careful reader makes of a line: encoding first, then syntax, then shape."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return QuarantineReason.BAD_ENCODING
    try:
        doc = json.loads(text)
    except ValueError:
        return QuarantineReason.UNPARSABLE
    if isinstance(doc, dict) and isinstance(doc.get("resourceSpans"), list):
        return None
    return QuarantineReason.BAD_SHAPE
