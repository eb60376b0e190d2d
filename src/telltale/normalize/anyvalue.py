"""OTLP AnyValue → the string the Collector's ClickHouse exporter stores (`Value.AsString()`)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def plain(value: AnyValue) -> Any:
    """Python value of an AnyValue; arrays and maps recursively."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [plain(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which)


def go_float(f: float) -> str:
    """A double as Go's encoding/json writes it (which pdata's `AsString()` follows):
    shortest round-trip digits, plain notation for 1e-6 <= |f| < 1e21, else `1e+21`/`1.5e-7`."""
    if f != f or f in (float("inf"), float("-inf")):
        return {True: "NaN"}.get(f != f, "+Inf" if f > 0 else "-Inf")
    if f == int(f) and abs(f) < 1e21:
        return str(int(f))
    if 1e-6 <= abs(f) < 1e21:
        text = repr(f)
        if "e" in text:  # repr switches to exponent form below 1e-4: Go does not until 1e-6
            text = f"{f:.20f}".rstrip("0")
            # Shortest digits that still round-trip, as repr would give them.
            for digits in range(1, 21):
                candidate = f"{f:.{digits}f}"
                if float(candidate) == f:
                    text = candidate
                    break
        return text
    mantissa, exponent = f"{f!r}".split("e") if "e" in repr(f) else (repr(f), "0")
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"


def go_json(value: Any) -> str:
    """Go json.Marshal of an `AsRaw()` value: map keys sorted, floats as `go_float`."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return orjson.dumps(value).decode()
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{orjson.dumps(str(k)).decode()}:{go_json(v)}"
                              for k, v in sorted(value.items())) + "}"
    return "[" + ",".join(go_json(v) for v in value) + "]"


def as_string(value: AnyValue) -> str:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return str(value.int_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "double_value":
        return go_float(value.double_value)
    if which is None:
        return ""
    if which == "bytes_value":
        return str(plain(value))
    return go_json(plain(value))


def attr_items(kvs: Iterable[KeyValue]) -> list[tuple[str, str]]:
    """Attributes as (key, value) pairs; the fast path covers string values (the common case).

    A key repeated within one record (invalid OTLP, but seen) keeps its last value, as a Go
    map built from it would (and as the JSON path does): a map cannot hold both."""
    out: dict[str, str] = {}
    for kv in kvs:
        v = kv.value
        if v.WhichOneof("value") == "string_value":
            out[kv.key] = v.string_value
        else:
            out[kv.key] = as_string(v)
    return list(out.items())
