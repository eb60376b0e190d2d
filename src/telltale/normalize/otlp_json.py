"""OTLP/JSON files: one request per file (pretty-printed or not) or JSON lines.

Trace and log requests are handed to the engine as raw lines (see store/otlp_json.py: the
vectorised path). Metric requests, whose five point types make the engine path long for little
volume, go through the protobuf classes' JSON mapping after re-encoding ids (OTLP JSON uses hex
where the protobuf JSON mapping expects base64) and share the protobuf decoder.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format

from telltale.model import QuarantineReason, Signal
from telltale.normalize.detect import LEADING_SPACE, is_json_lines
from telltale.normalize.options import DecodeOptions
from telltale.normalize.otlp_proto import REQUEST_TYPES, decode_request
from telltale.normalize.staging import Decoded, Reject

_LINES = pa.schema([pa.field("LineNo", pa.int64()), pa.field("Line", pa.string())])


def _hex_to_b64(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        # Keep the bad id visible (it fails validation later) instead of losing the record.
        raw = value.encode()
    return base64.b64encode(raw).decode()


def _fix_ids(node: Any) -> None:
    """Hex → base64 for traceId/spanId anywhere (log records, exemplars) in place."""
    if isinstance(node, dict):
        for key in ("traceId", "spanId"):
            if key in node:
                node[key] = _hex_to_b64(node[key])
        for child in node.values():
            if isinstance(child, dict | list):
                _fix_ids(child)
    elif isinstance(node, list):
        for child in node:
            _fix_ids(child)


def _signal_of(doc: dict[str, Any]) -> Signal | None:
    for key, signal in (("resourceSpans", Signal.TRACES), ("resourceLogs", Signal.LOGS),
                        ("resourceMetrics", Signal.METRICS)):
        if key in doc:
            return signal
    return None


def _decode_doc(doc: Any, text: str, line_no: int, out: Decoded) -> None:
    signal = _signal_of(doc) if isinstance(doc, dict) else None
    pos = f"line {line_no}"
    if signal is not Signal.METRICS:
        # Traces, logs, and shapes nobody recognises go to the engine (which rejects the last).
        line = pa.table({"LineNo": [line_no], "Line": [text]}, schema=_LINES)
        (out.json_log_lines if signal is Signal.LOGS else out.json_trace_lines).append(line)
        return
    _fix_ids(doc)
    try:
        req = json_format.ParseDict(doc, REQUEST_TYPES[signal](), ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, ValueError, TypeError) as exc:
        out.rejects.append(Reject(signal, pos, QuarantineReason.BAD_SHAPE, text, str(exc)[:500]))
        return
    out.extend(decode_request(req, pos))


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    out = Decoded()
    start = LEADING_SPACE.match(data).end()  # type: ignore[union-attr]
    if options.first_line == 1 and data[start:start + 1] == b"{" and not is_json_lines(data):
        # A pretty-printed single request is one document spanning many lines.
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = None
        if doc is not None:
            _decode_doc(doc, data.decode().strip(), 1, out)
            return out
    lines = line_array(data)
    if lines is None:  # not UTF-8 throughout: line by line, rejecting the lines that are not
        _route_lines(_lines(data, out, options.first_line), out)
        return out
    numbers = pa.array(np.arange(options.first_line, options.first_line + len(lines)))
    # Cheap routing on the first key: only metric lines are parsed in Python.
    head = pc.utf8_slice_codeunits(lines, 0, 64)
    metric = pc.match_substring(head, '"resourceMetrics"')
    logs = pc.and_(pc.match_substring(head, '"resourceLogs"'), pc.invert(metric))
    kept = pc.invert(pc.match_substring_regex(lines, r"^\s*$"))
    traces = pc.and_(kept, pc.invert(pc.or_(metric, logs)))
    for mask, target in ((traces, out.json_trace_lines), (pc.and_(kept, logs), out.json_log_lines)):
        count = pc.sum(mask).as_py() or 0
        if count == len(lines):  # the usual file: one signal, no blank line, nothing to copy
            target.append(pa.table({"LineNo": numbers, "Line": lines}, schema=_LINES))
        elif count:
            target.append(pa.table({"LineNo": numbers.filter(mask), "Line": lines.filter(mask)},
                                   schema=_LINES))
    metric_lines = pc.and_(kept, metric)
    if pc.any(metric_lines).as_py():
        _route_lines(zip(numbers.filter(metric_lines).to_pylist(),
                         [t.rstrip("\n") for t in lines.filter(metric_lines).to_pylist()],
                         strict=True), out)
    return out


def line_array(data: bytes) -> pa.StringArray | None:
    """The data's lines as one Arrow array over the data's own buffer (no copy), each line
    keeping its `\n` (JSON ignores it; what shows the line rtrims it); None when the data is not
    UTF-8 or too large for 32-bit offsets. Splitting and copying the lines in Python cost a
    sixth of a JSON file's ingest."""
    if len(data) >= 1 << 31:
        return None
    first = data.find(b"\n")
    if 0 <= first < 4096:  # many short lines: find them all at once
        ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
    else:  # few long lines (OTLP requests): memchr from one to the next
        found = []
        at = first
        while at >= 0:
            found.append(at + 1)
            at = data.find(b"\n", at + 1)
        ends = np.array(found, dtype=np.int64)
    offsets = np.concatenate(([0], ends, [] if len(ends) and ends[-1] == len(data) else [len(data)]))
    arr = pa.StringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets.astype(np.int32)),
                                      pa.py_buffer(data))
    try:
        arr.validate(full=True)  # UTF-8, in C++
    except pa.ArrowInvalid:
        return None
    return arr


def _route_lines(lines: Iterable[tuple[int, str]], out: Decoded) -> None:
    """Lines routed one by one: metric requests parsed in Python, the rest to the engine."""
    routed: dict[Signal, tuple[list[int], list[str]]] = {
        Signal.TRACES: ([], []), Signal.LOGS: ([], [])}
    for no, text in lines:
        head = text[:64]
        if '"resourceMetrics"' not in head:
            nos, texts = routed[Signal.LOGS if '"resourceLogs"' in head else Signal.TRACES]
            nos.append(no)
            texts.append(text)
            continue
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            out.rejects.append(Reject(Signal.METRICS, f"line {no}", QuarantineReason.UNPARSABLE,
                                      text, str(exc)))
            continue
        _decode_doc(doc, text, no, out)
    for signal, target in ((Signal.TRACES, out.json_trace_lines),
                           (Signal.LOGS, out.json_log_lines)):
        nos, texts = routed[signal]
        if nos:
            target.append(pa.table({"LineNo": nos, "Line": texts}, schema=_LINES))


def _lines(data: bytes, out: Decoded, first: int) -> list[tuple[int, str]]:
    """Non-blank lines with their numbers (the first is `first`); non-UTF-8 lines are rejected."""
    try:
        return [(no, ln) for no, ln in enumerate(data.decode().split("\n"), start=first)
                if ln.strip()]
    except UnicodeDecodeError:
        pass
    lines = []
    for no, raw in enumerate(data.split(b"\n"), start=first):
        if not raw.strip():
            continue
        try:
            lines.append((no, raw.decode()))
        except UnicodeDecodeError as exc:
            out.rejects.append(Reject(Signal.TRACES, f"line {no}", QuarantineReason.BAD_ENCODING,
                                      raw.decode(errors="replace"), str(exc)))
    return lines
