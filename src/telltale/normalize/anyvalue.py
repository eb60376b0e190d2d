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


def as_string(value: AnyValue) -> str:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return str(value.int_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "double_value":
        return repr(value.double_value)
    if which is None:
        return ""
    if which == "bytes_value":
        return str(plain(value))
    # Go's json.Marshal, which the exporter uses, writes map keys sorted.
    return orjson.dumps(plain(value), option=orjson.OPT_SORT_KEYS).decode()


def attr_items(kvs: Iterable[KeyValue]) -> list[tuple[str, str]]:
    """Attributes as (key, value) pairs; the fast path covers string values (the common case)."""
    out = []
    for kv in kvs:
        v = kv.value
        if v.WhichOneof("value") == "string_value":
            out.append((kv.key, v.string_value))
        else:
            out.append((kv.key, as_string(v)))
    return out
