"""Decode Nezha's container log CSVs (`log/HH_MM_log.csv.gz`) into log records.

Columns: `Timestamp` (ISO), `TimeUnixNano`, `Node`, `PodName`, `Container`, `TraceID`, `SpanID`,
`Log` — the container runtime's JSON line (`{"log": "16:42:22.382 INFO  t.s.Impl#532 ...",
"stream": ..., "time": ...}`). The record's Body is the inner `log` text; its level (the first
TRACE/DEBUG/INFO/WARN/ERROR/FATAL word of the line) becomes SeverityText/SeverityNumber, so
error logs are countable per service. A row whose `Log` is not that JSON keeps the raw text as
its Body rather than being lost.
"""

from __future__ import annotations

import re

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from telltale.model import QuarantineReason, Signal
from telltale.normalize import staging
from telltale.normalize.nezha_metrics import service_of_pod
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

_REQUIRED = ("TimeUnixNano", "PodName", "Log")
_LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|SEVERE|FATAL)\b")
# OpenTelemetry severity numbers: the first of each range (INFO = 9, ERROR = 17...).
SEVERITY_NUMBERS = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17,
                    "SEVERE": 17, "FATAL": 21}


def _inner(text: str | None) -> str:
    if not text:
        return ""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    body = doc.get("log") if isinstance(doc, dict) else None
    return str(body).rstrip("\n") if body is not None else text


def level_of(body: str) -> str:
    """The log level a Java/Go log line states near its start ('' when it states none)."""
    found = _LEVEL.search(body[:80])
    if not found:
        return ""
    word = found.group(1)
    return "WARN" if word == "WARNING" else "ERROR" if word == "SEVERE" else word


def decode(data: bytes, options: DecodeOptions | str = "-") -> Decoded:
    # `telltale ingest` passes its DecodeOptions; the Nezha evaluation passes a source name.
    source = options.source if isinstance(options, DecodeOptions) else options
    """CSV bytes → staged log records (a file without the needed columns is one reject)."""
    if not data.strip():
        return Decoded()
    try:
        table = pacsv.read_csv(pa.py_buffer(data), convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in
                          ("Timestamp", "TimeUnixNano", "Node", "PodName", "Container",
                           "TraceID", "SpanID", "Log")}))
    except pa.ArrowInvalid as exc:
        return Decoded(rejects=[Reject(Signal.LOGS, "document", QuarantineReason.UNPARSABLE,
                                       data[:1 << 20].decode("utf-8", "replace"),
                                       f"not CSV: {exc}")])
    missing = [c for c in _REQUIRED if c not in table.column_names]
    if missing:
        return Decoded(rejects=[Reject(
            Signal.LOGS, "row 1", QuarantineReason.BAD_SHAPE,
            data[:1 << 20].decode("utf-8", "replace"),
            f"{source}: no column {', '.join(missing)} (header: {', '.join(table.column_names)})")])
    n = table.num_rows
    pods = [p or "" for p in table.column("PodName").to_pylist()]
    bodies = [_inner(t) for t in table.column("Log").to_pylist()]
    levels = [level_of(b) for b in bodies]

    def text(name: str) -> pa.Array:
        if name not in table.column_names:
            return pa.nulls(n, pa.string())
        return pc.cast(table.column(name), pa.string()).combine_chunks()

    raw_ns = text("TimeUnixNano")
    ns = pc.cast(pc.if_else(pc.match_substring_regex(raw_ns, r"^\d{1,19}$"), raw_ns,
                            pa.scalar(None, pa.string())), pa.int64())
    resource = pa.MapArray.from_arrays(
        pa.array(list(range(0, 2 * n + 1, 2)), pa.int32()),
        pa.array(["service.name", "k8s.pod.name"] * n, pa.string()),
        pa.array([v for p in pods for v in (service_of_pod(p), p)], pa.string()),
        type=staging.ATTRS)
    columns: dict[str, pa.Array] = {
        "Pos": pa.array([f"row {i + 2}" for i in range(n)], pa.string()),
        "RecordBytes": pa.array([len(b) + 64 for b in bodies], pa.int64()),
        "Timestamp": ns,
        "ObservedTimestamp": ns,
        "TraceId": text("TraceID"),
        "SpanId": text("SpanID"),
        "SeverityText": pa.array(levels, pa.string()),
        "SeverityNumber": pa.array([SEVERITY_NUMBERS.get(lv, 0) for lv in levels], pa.int64()),
        "ServiceName": pa.array([service_of_pod(p) for p in pods], pa.string()),
        "Body": pa.array(bodies, pa.string()),
        "ResourceAttributes": resource,
        "ScopeName": pa.array(["nezha/logs"] * n, pa.string()),
    }
    schema = staging.LOGS
    out = pa.Table.from_arrays(
        [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in schema],
        schema=schema)
    return Decoded(logs=[out])
