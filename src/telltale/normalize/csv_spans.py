"""Decode CSV files with one span per row through a column mapping (see docs/mapping.md).

Vectorised end to end: pyarrow.csv parses (rows with the wrong column count come back through
`invalid_row_handler` as rejects) and pyarrow.compute converts, so a Nezha minute file of
thousands of spans costs milliseconds. A row that is not UTF-8 is rejected alone, not with the
whole file. Positions are "row N" with the header
as row 1 (blank lines not counted), the numbering pyarrow reports for invalid rows.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from telltale.model import QuarantineReason, Signal, SpanKind, StatusCode
from telltale.normalize import staging
from telltale.normalize.events import DEFAULT_ERROR_VALUES, DEFAULT_OK_VALUES
from telltale.normalize.fields import (
    INT64_MAX,
    UNITS,
    MappingError,
    iso_to_ns,
    layer_mapping,
    unit_from_magnitude,
    unit_from_name,
)
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

KEYS = frozenset({
    "preset", "trace_id", "span_id", "parent_id", "name", "service", "service_name",
    "service_from", "start", "end", "duration", "start_unit", "duration_unit", "root_values",
    "attributes", "resource_attributes", "kind", "status", "status_message", "error_values",
    "ok_values",
})

# Kubernetes pod names: Deployment `name-<template hash>-<5>`, DaemonSet/Job `name-<5>`,
# StatefulSet `name-<ordinal>`. Generated parts use an alphabet without vowels, so no word
# of a service name looks like one.
_K8S_CHARS = "[bcdfghjklmnpqrstvwxz2456789]"
SERVICE_RULES = {"k8s-pod": rf"^(.+?)(?:(?:-{_K8S_CHARS}{{6,10}})?-{_K8S_CHARS}{{5}}|-[0-9]+)$"}

_NEZHA_COLUMNS = ["TraceID", "SpanID", "ParentID", "PodName", "OperationName",
                  "StartTimeUnixNano", "EndTimeUnixNano", "Duration"]
PRESETS: dict[str, dict[str, Any]] = {
    # Nezha (FSE'23) Train-Ticket traces: Duration is µs; the end column is exact, so it wins.
    "nezha": {
        "trace_id": "TraceID", "span_id": "SpanID", "parent_id": "ParentID",
        "name": "OperationName", "service": "PodName", "service_from": "k8s-pod",
        "start": "StartTimeUnixNano", "end": "EndTimeUnixNano", "start_unit": "ns",
        "duration": "Duration", "duration_unit": "us", "root_values": ["root"],
        "resource_attributes": {"k8s.pod.name": "PodName"},
    },
}

DEFAULT_ROOT_VALUES = ["", "root", "null", "none", "nil", "0", "-"]
# Column names (lower-case, letters and digits only) tried when the mapping leaves a key out;
# time columns also match by prefix (start_time_ns, duration_ms).
_GUESSES: dict[str, tuple[str, ...]] = {
    "trace_id": ("traceid", "trace"),
    "span_id": ("spanid", "span", "id"),
    "parent_id": ("parentspanid", "parentid", "parentspan", "parent"),
    "name": ("spanname", "operationname", "operation", "name", "op", "endpoint"),
    "service": ("servicename", "service", "podname", "pod", "app", "component"),
    "start": ("starttimeunixnano", "starttime", "start", "timestamp", "ts", "time"),
    "end": ("endtimeunixnano", "endtime", "end"),
    "duration": ("duration", "elapsed", "latency", "dur"),
    "kind": ("spankind", "kind"),
    "status": ("statuscode", "status"),
}
_PREFIX_OK = {"start", "end", "duration"}
_REQUIRED = ("trace_id", "span_id", "name", "start")
_INT = r"^-?(?:\d{1,18}|[1-8]\d{18})$"  # fits in int64 without overflow
_NUMBER = r"^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$"
_STR_NULL = pa.scalar(None, pa.string())


def detect_preset(header: list[str]) -> str | None:
    return "nezha" if set(_NEZHA_COLUMNS) <= set(header) else None


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _guess(header: list[str]) -> dict[str, Any]:
    by_norm = {_norm(h): h for h in reversed(header)}  # first column wins on a tie
    guessed: dict[str, Any] = {}
    for key, names in _GUESSES.items():
        found = next((by_norm[n] for n in names if n in by_norm), None)
        if found is None and key in _PREFIX_OK:
            found = next((h for n in names for h in header if _norm(h).startswith(n)), None)
        if found is not None:
            guessed[key] = found
    return guessed


def resolve_mapping(mapping: dict[str, Any], header: list[str]) -> dict[str, Any]:
    """Guesses from the header, then the preset (named or detected), then `mapping` itself."""
    merged = layer_mapping(mapping, known=KEYS, presets=PRESETS, detected=detect_preset(header),
                           guessed=_guess(header), what="CSV")
    if merged.get("start_unit") not in (None, "auto", "iso8601", *UNITS):
        raise MappingError("start_unit must be one of ns, us, ms, s, auto, iso8601")
    if merged.get("duration_unit") not in (None, *UNITS):
        raise MappingError("duration_unit must be one of ns, us, ms, s")
    rule = merged.get("service_from")
    if rule is not None and rule not in SERVICE_RULES and _groups(str(rule)) != 1:
        raise MappingError(f"service_from must be {sorted(SERVICE_RULES)} or a regex with one group")
    return merged


def _groups(pattern: str) -> int:
    try:
        return re.compile(pattern).groups
    except re.error:
        return -1


def _missing(m: dict[str, Any], header: list[str]) -> list[str]:
    """What keeps the mapping from working on this header, as readable phrases."""
    problems = [f"no column for {k}" for k in _REQUIRED if not m.get(k)]
    if not m.get("end") and not m.get("duration"):
        problems.append("no column for end or duration")
    columns = [m.get(k) for k in ("trace_id", "span_id", "parent_id", "name", "service", "start",
                                  "end", "duration", "status", "status_message")]
    columns += [c for _, c in _pairs(m.get("attributes")) + _pairs(m.get("resource_attributes"))]
    problems += [f"column {c!r} not in header" for c in columns if c and c not in header]
    return problems


def _pairs(spec: object) -> list[tuple[str, str]]:
    """Attribute spec: a list of columns (kept under their own names) or {attribute: column}."""
    if isinstance(spec, dict):
        return [(str(k), str(v)) for k, v in spec.items()]
    if isinstance(spec, str):
        return [(spec, spec)]
    return [(str(c), str(c)) for c in spec] if isinstance(spec, list) else []


# -- vectorised conversions -----------------------------------------------------------------


def _to_ns(values: pa.Array, unit: str) -> pa.Array:
    """Text → int64 ns; anything unreadable or out of range becomes null (bad_timestamp)."""
    values = pc.utf8_trim_whitespace(values)
    numeric = pc.match_substring_regex(values, _NUMBER)
    if unit == "auto":
        numbers = pc.drop_null(pc.cast(pc.if_else(numeric, values, _STR_NULL), pa.float64()))
        if len(numbers) == 0 and pc.count(pc.if_else(pc.equal(values, ""), _STR_NULL, values)).as_py():
            unit = "iso8601"
        else:
            median = pc.approximate_median(numbers).as_py() if len(numbers) else 0.0
            unit = unit_from_magnitude(median)
    if unit == "iso8601":
        return pa.array([iso_to_ns(v) if v else None for v in values.to_pylist()], pa.int64())
    factor = UNITS[unit]
    is_int = pc.match_substring_regex(values, _INT)
    ints = pc.cast(pc.if_else(is_int, values, _STR_NULL), pa.int64())
    ints = pc.if_else(pc.less_equal(pc.abs(ints), INT64_MAX // factor), ints,
                      pa.scalar(None, pa.int64()))
    fractional = pc.and_(numeric, pc.invert(is_int))
    floats = pc.multiply(pc.cast(pc.if_else(fractional, values, _STR_NULL), pa.float64()),
                         float(factor))
    floats = pc.if_else(pc.less(pc.abs(floats), 9.2e18), floats, pa.scalar(None, pa.float64()))
    return pc.coalesce(pc.multiply(ints, factor), pc.cast(pc.round(floats), pa.int64()))


def _per_distinct(values: pa.Array, convert: Callable[[str | None], str | None]) -> pa.Array:
    """Apply a Python function once per distinct value (kinds, statuses: a handful each)."""
    distinct = pc.unique(values)
    mapped = pa.array([convert(v) for v in distinct.to_pylist()], pa.string())
    return pc.take(mapped, pc.index_in(values, value_set=distinct))


def _map_column(entries: list[tuple[str, pa.Array]], n: int) -> pa.Array:
    """map<string,string> per row from (key, column) pairs, leaving out empty cells."""
    if not entries:
        return pa.nulls(n, staging.ATTRS)
    k = len(entries)
    items = pa.concat_arrays([col for _, col in entries])  # entry j of row r at j * n + r
    present = pc.fill_null(pc.not_equal(items, ""), False).to_numpy(zero_copy_only=False)
    present = present.reshape(k, n).T
    index = (np.arange(k)[None, :] * n + np.arange(n)[:, None])[present]
    offsets = np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int32)
    keys = pc.take(pa.array([name for name, _ in entries], pa.string()), pa.array(index // n))
    return pa.MapArray.from_arrays(pa.array(offsets), keys, pc.take(items, pa.array(index)),
                                   type=staging.ATTRS)


# -- reading ---------------------------------------------------------------------------------

_BadRow = tuple[int | None, str, str]  # (row number, text, detail)


def _header(data: bytes) -> list[str]:
    first = data.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].rstrip(b"\r")
    text = first.decode("utf-8", "replace")
    try:
        return next(csv.reader([text]), [])
    except csv.Error:  # a stray quote or carriage return: pyarrow will judge the file
        return text.split(",")


def _read_once(data: bytes, header: list[str], threads: bool) -> tuple[pa.Table, list[_BadRow]]:
    bad: list[_BadRow] = []

    def handler(row: Any) -> str:
        bad.append((row.number, row.text,
                    f"{row.actual_columns} columns where the header has {row.expected_columns}"))
        return "skip"

    table = pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(use_threads=threads),
        parse_options=pacsv.ParseOptions(invalid_row_handler=handler),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())),
    )
    return table, bad


def _read(data: bytes, header: list[str]) -> tuple[pa.Table, list[_BadRow]]:
    table, bad = _read_once(data, header, threads=True)
    if any(number is None for number, _, _ in bad):  # row numbers need the serial reader
        table, bad = _read_once(data, header, threads=False)
    return table, bad


def _row_numbers(n: int, bad: list[_BadRow]) -> np.ndarray:
    """Row numbers of the rows read: every row from 2 on that pyarrow did not hand back."""
    if not bad:
        return np.arange(2, n + 2, dtype=np.int64)
    skipped = np.array([number for number, _, _ in bad if number is not None], dtype=np.int64)
    numbers = np.setdiff1d(np.arange(2, n + len(bad) + 2, dtype=np.int64), skipped)
    return numbers[:n] if len(numbers) >= n else np.arange(2, n + 2, dtype=np.int64)


def _sanitise(data: bytes) -> tuple[bytes, dict[int, str]]:
    """Make the file valid UTF-8 for pyarrow; return {row number: original text} of bad rows.

    pyarrow cannot hand an undecodable row to the invalid-row handler (it fails the file), so
    such lines are repaired here and their rows rejected as bad_encoding after parsing. The
    common, valid case costs one decode pass.
    """
    try:
        data.decode("utf-8")
        return data, {}
    except UnicodeDecodeError:
        pass
    lines, undecodable, row = data.split(b"\n"), {}, 0
    for i, line in enumerate(lines):
        row += bool(line.rstrip(b"\r"))  # pyarrow numbers rows, skipping blank lines
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            if row > 1:  # a broken header shows up as missing columns instead
                undecodable[row] = line.rstrip(b"\r").decode("utf-8", "backslashreplace")
            lines[i] = line.decode("utf-8", "replace").encode()
    return b"\n".join(lines), undecodable


def _record_bytes(cols: dict[str, pa.Array], n: int) -> pa.Array:
    size = pa.array(np.full(n, len(cols), dtype=np.int64))  # separators and newline
    for col in cols.values():
        size = pc.add(size, pc.cast(pc.fill_null(pc.binary_length(col), 0), pa.int64()))
    return size


# -- assembly --------------------------------------------------------------------------------


def _status_converter(m: dict[str, Any]) -> Callable[[str | None], str | None]:
    errors = {str(v).lower() for v in m.get("error_values") or DEFAULT_ERROR_VALUES}
    oks = {str(v).lower() for v in m.get("ok_values") or DEFAULT_OK_VALUES}

    def convert(value: str | None) -> str:
        text = (value or "").strip().lower()
        if text in errors:
            return StatusCode.ERROR.value
        if text in oks:
            return StatusCode.OK.value
        # OTel spellings ("STATUS_CODE_ERROR", "2"): a CSV status column of codes is OTel's own.
        return StatusCode.from_otlp(text).value

    return convert


def _service(cols: dict[str, pa.Array], m: dict[str, Any], n: int) -> pa.Array:
    if not m.get("service"):
        return pa.array([str(m.get("service_name") or "unknown_service")] * n, pa.string())
    values = cols[m["service"]]
    rule = m.get("service_from")
    if rule is None:
        return values
    regex = re.compile(SERVICE_RULES.get(str(rule), str(rule)))

    def derive(value: str | None) -> str | None:
        # A value the rule does not match keeps its whole text (a pod name without a suffix).
        found = regex.search(value) if value is not None else None
        return found.group(1) if found and found.group(1) else value

    # Per distinct value: a file holds thousands of spans but a few dozen pods.
    return _per_distinct(values, derive)


def _spans(cols: dict[str, pa.Array], m: dict[str, Any], n: int) -> dict[str, pa.Array]:
    start_unit = m.get("start_unit") or "auto"
    start = _to_ns(cols[m["start"]], start_unit)
    if m.get("end"):
        end = _to_ns(cols[m["end"]], start_unit)
    else:
        duration = _to_ns(cols[m["duration"]],
                          m.get("duration_unit") or unit_from_name(m["duration"], "ms"))
        safe = pc.less_equal(pc.abs(start), 1 << 62)  # so start + duration cannot overflow
        duration = pc.if_else(pc.less_equal(pc.abs(duration), 1 << 62), duration, None)
        end = pc.add(pc.if_else(safe, start, pa.scalar(None, pa.int64())), duration)
    if m.get("parent_id"):
        roots = pa.array([str(v).lower() for v in m.get("root_values", DEFAULT_ROOT_VALUES)])
        parent = cols[m["parent_id"]]
        parent = pc.if_else(pc.is_in(pc.utf8_lower(parent), value_set=roots), "", parent)
    else:
        parent = pa.array([""] * n, pa.string())
    service = _service(cols, m, n)
    kind_spec = m.get("kind")
    if kind_spec in cols:
        kind = _per_distinct(cols[kind_spec], lambda v: SpanKind.from_otlp(v or None).value)
    else:
        kind = pa.array([SpanKind.from_otlp(kind_spec or None).value] * n, pa.string())
    out = {
        "StartNs": start, "EndNs": end, "TraceId": cols[m["trace_id"]],
        "SpanId": cols[m["span_id"]], "ParentSpanId": parent, "SpanName": cols[m["name"]],
        "SpanKind": kind, "ServiceName": service,
        "ResourceAttributes": _map_column(
            [("service.name", service)]
            + [(k, cols[c]) for k, c in _pairs(m.get("resource_attributes"))], n),
        "SpanAttributes": _map_column([(k, cols[c]) for k, c in _pairs(m.get("attributes"))], n),
    }
    if m.get("status"):
        status = _per_distinct(cols[m["status"]], _status_converter(m))
        out["StatusCode"] = status
        out["StatusMessage"] = (cols[m["status_message"]] if m.get("status_message") else
                                pc.if_else(pc.equal(status, StatusCode.ERROR.value),
                                           cols[m["status"]], _STR_NULL))
    return out


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    """CSV → staged spans. A header the mapping does not fit is one reject for the file."""
    if not data or data.isspace():
        return Decoded()
    clean, undecodable = _sanitise(data)
    header = _header(clean)
    m = resolve_mapping(options.mapping, header)
    problems = _missing(m, header)
    if problems:
        return Decoded(rejects=[Reject(
            Signal.TRACES, "row 1", QuarantineReason.BAD_SHAPE,
            data.decode("utf-8", "backslashreplace"),
            f"CSV does not fit the mapping: {'; '.join(problems)} (header: {', '.join(header)})")])
    try:
        table, bad = _read(clean, header)
    except pa.ArrowInvalid as exc:
        return Decoded(rejects=[Reject(Signal.TRACES, "document", QuarantineReason.UNPARSABLE,
                                       data.decode("utf-8", "backslashreplace"),
                                       f"not CSV: {exc}")])
    out = Decoded(rejects=[
        Reject(Signal.TRACES, f"row {number}", QuarantineReason.BAD_SHAPE, row_text, detail)
        for number, row_text, detail in bad if number not in undecodable])
    out.rejects += [Reject(Signal.TRACES, f"row {number}", QuarantineReason.BAD_ENCODING, text,
                           "row is not UTF-8") for number, text in undecodable.items()]
    rows = _row_numbers(table.num_rows, bad)
    keep = ~np.isin(rows, list(undecodable))
    if not keep.all():
        table, rows = table.filter(pa.array(keep)), rows[keep]
    n = len(rows)
    if n == 0:
        return out
    cols = {name: table.column(name).combine_chunks() for name in table.column_names}
    arrays = _spans(cols, m, n)
    arrays["Pos"] = pc.binary_join_element_wise("row ", pc.cast(pa.array(rows), pa.string()), "")
    arrays["RecordBytes"] = _record_bytes(cols, n)
    out.spans.append(pa.Table.from_arrays(
        [arrays[f.name] if f.name in arrays else pa.nulls(n, f.type) for f in staging.SPANS],
        schema=staging.SPANS))
    return out
