"""OTLP/JSON files: one request per file (pretty-printed or not) or JSON lines.

Trace and log requests are handed to the engine as raw lines (see store/otlp_json.py: the
vectorised path). Metric requests, whose five point types make the engine path long for little
volume, go through the protobuf classes' JSON mapping after re-encoding ids (OTLP JSON uses hex
where the protobuf JSON mapping expects base64) and share the protobuf decoder.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson
import pyarrow as pa
from google.protobuf import json_format

from telltale.model import QuarantineReason, Signal
from telltale.normalize.options import DecodeOptions
from telltale.normalize.otlp_proto import REQUEST_TYPES, decode_request
from telltale.normalize.staging import Decoded, Reject

_LEADING_SPACE = re.compile(rb"\s*")
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
    start = _LEADING_SPACE.match(data).end()  # type: ignore[union-attr]
    first_line = data[start:data.find(b"\n", start) if b"\n" in data[start:] else len(data)]
    if (options.first_line == 1 and first_line.startswith(b"{")
            and not first_line.rstrip().endswith(b"}")):
        # A pretty-printed single request is one document spanning many lines.
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = None
        if doc is not None:
            _decode_doc(doc, data.decode().strip(), 1, out)
            return out
    routed: dict[Signal, tuple[list[int], list[str]]] = {
        Signal.TRACES: ([], []), Signal.LOGS: ([], [])}
    for no, text in _lines(data, out, options.first_line):
        # Cheap routing on the first key: only metric lines are parsed in Python.
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
    return out


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
