"""Field-level conversions every mapped/JSON decoder shares: ids, times and units, attribute
text, whole-document loading. One spelling of each rule, so Jaeger, Zipkin, CSV and event
lines read the same value the same way (and as the OTLP paths store it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import pyarrow as pa

from telltale.model import QuarantineReason, Signal
from telltale.normalize import staging
from telltale.normalize.anyvalue import go_float, go_json
from telltale.normalize.staging import Reject

INT64_MAX = (1 << 63) - 1
TRACE_ID_HEX = 32
SPAN_ID_HEX = 16

Attrs = list[tuple[str, str]]


class NotLoaded:
    """Marker returned by `load_document` when the input was rejected (JSON `null` is a value)."""


NOT_LOADED = NotLoaded()


def load_document(data: bytes, rejects: list[Reject]) -> Any:
    """Parse one JSON document, or append a whole-document reject and return NOT_LOADED."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        rejects.append(Reject(Signal.TRACES, "document", QuarantineReason.BAD_ENCODING,
                              data.decode("utf-8", "backslashreplace"), str(exc)))
        return NOT_LOADED
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        rejects.append(Reject(Signal.TRACES, "document", QuarantineReason.UNPARSABLE, text,
                              f"not JSON: {exc}"))
        return NOT_LOADED


def attr_text(value: object) -> str:
    """Attribute values are strings in the store: JSON spelling for scalars, compact JSON else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)  # as the OTLP paths (and the Collector's exporter) write doubles
    return go_json(value)


def pad_id(value: object, width: int) -> str | None:
    """Left-pad an id Jaeger/Zipkin trimmed of leading zeros; anything else passes through raw."""
    if value is None:
        return None
    text = attr_text(value)
    return text.rjust(width, "0") if 0 < len(text) < width else text


def micros_to_ns(value: object) -> int | None:
    """Microseconds (number or numeric string) to int64 ns; None when absent or not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        # Decimal keeps float microseconds exact: a float product would round to 256 ns steps.
        ns = int(Decimal(value if isinstance(value, str | int) else repr(value)) * 1000)
    except (InvalidOperation, TypeError, ValueError, OverflowError):
        return None
    return ns if -INT64_MAX <= ns <= INT64_MAX else None


def end_ns(start: int | None, duration: int | None) -> int | None:
    """start + duration, or None (the store's bad_timestamp) when either is absent or it overflows."""
    if start is None or duration is None or abs(start + duration) > INT64_MAX:
        return None
    return start + duration


def is_true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def record_size(record: object) -> int:
    return len(orjson.dumps(record))


def span_table(rows: list[dict[str, object]]) -> pa.Table:
    """Row dicts (all with the same keys) → a staged spans table; other columns are null."""
    return staging.table(staging.SPANS, {name: [r[name] for r in rows] for name in rows[0]})


UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
TIME_UNITS = (*UNITS, "auto", "iso8601")
_FRACTION = re.compile(r"^(.*?T?\d{2}:\d{2}:\d{2})[.,](\d+)(.*)$")


def unit_from_name(name: str, default: str) -> str:
    """Unit suggested by a field name's suffix (duration_ms → ms), else `default`."""
    low = re.sub(r"[^a-z]", "", name.lower())
    for unit, suffixes in (("ns", ("ns", "nano", "nanos", "nanoseconds")),
                           ("us", ("us", "micros", "usec", "microseconds")),
                           ("ms", ("ms", "millis", "msec", "milliseconds")),
                           ("s", ("sec", "secs", "seconds"))):
        if low.endswith(suffixes):
            return unit
    return default


def unit_from_magnitude(value: float) -> str:
    """Epoch timestamps differ by 10^3 per unit, so the size of one tells its unit."""
    value = abs(value)
    return "ns" if value >= 1e17 else "us" if value >= 1e14 else "ms" if value >= 1e11 else "s"


def iso_to_ns(text: str) -> int | None:
    """ISO 8601 → ns, keeping nanosecond fractions that datetime would truncate; naive = UTC."""
    match = _FRACTION.match(text.strip())
    base, fraction, rest = match.groups() if match else (text.strip(), "", "")
    try:
        moment = datetime.fromisoformat(base + rest)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(moment.timestamp())
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])


def time_ns(value: object, unit: str) -> int | None:
    """A number (or numeric string) in `unit`, or an ISO 8601 string, as int64 ns; None if not."""
    if value is None or isinstance(value, bool):
        return None
    if unit != "iso8601":
        try:
            # Decimal keeps 1732000000.25 s exact; float arithmetic would round to 256 ns.
            number = Decimal(value if isinstance(value, str | int) else repr(value))
            if unit == "auto":
                unit = unit_from_magnitude(float(number))
            ns = int(number * UNITS[unit])
        except (InvalidOperation, TypeError, ValueError, OverflowError):
            ns = None
    if unit == "iso8601" or (ns is None and unit == "auto" and isinstance(value, str)):
        ns = iso_to_ns(value) if isinstance(value, str) else None
    return ns if ns is not None and -INT64_MAX <= ns <= INT64_MAX else None


class MappingError(ValueError):
    """The mapping itself is wrong (unknown key, preset or unit): a user error, not bad data."""


def layer_mapping(mapping: dict[str, Any], *, known: frozenset[str],
                  presets: dict[str, dict[str, Any]], detected: str | None,
                  guessed: dict[str, Any], what: str) -> dict[str, Any]:
    """Guesses, then the preset (named, or detected; `"preset": null` turns detection off),
    then the user's own keys: the one precedence rule of every mapped format."""
    unknown = set(mapping) - known
    if unknown:
        raise MappingError(f"unknown {what} mapping keys {sorted(unknown)}; known: {sorted(known)}")
    preset = mapping.get("preset", detected)
    if preset is not None and preset not in presets:
        raise MappingError(f"unknown {what} preset {preset!r}; known: {sorted(presets)}")
    return {**guessed, **(presets[preset] if preset else {}),
            **{k: v for k, v in mapping.items() if k != "preset"}}
