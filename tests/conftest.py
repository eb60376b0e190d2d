"""Shared fixtures and hand-written OTLP builders for the behaviour tests.

The builders here write OTLP exactly as the specification spells it (hex ids, enums as
integers, 64-bit integers as strings), independently of telltale's own decoders, so the tests
compare the library against the format rather than against itself.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import math
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telltale.settings import Settings
from telltale.sim import SimConfig, SimResult, simulate
from telltale.store import Store

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OTLP_DIR = SHARED_DATA / "otlp"

requires_shared_otlp = pytest.mark.skipif(
    not OTLP_DIR.is_dir(),
    reason=f"external OTLP fixtures not present at {OTLP_DIR} (../shared/data is optional)",
)

# A fixed wall clock for every store the tests open: 2026-01-01T00:00:00Z.
NOW_NS = 1_767_225_600 * 1_000_000_000
# Span times in the hand-made fixtures: 2025-01-01T00:00:00Z.
T0 = 1_735_689_600 * 1_000_000_000
MS = 1_000_000
S = 1_000_000_000

# The OTLP enum numbers and the spelling the Collector's ClickHouse exporter stores.
KIND_NAMES = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer",
              5: "Consumer"}
STATUS_NAMES = {0: "Unset", 1: "Ok", 2: "Error"}


T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a thread of its own: a playwright session elsewhere in
    the test run may hold an event loop on the main thread, where asyncio.run would refuse."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def pinned_settings(path: Path, **overrides: Any) -> Settings:
    return Settings(db_path=path, clock=lambda: NOW_NS, **overrides)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "t.duckdb"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path, settings=pinned_settings(db_path)) as s:
        yield s


# One 10-minute simulation (every injected incident) shared by the analyses' tests: simulated
# and committed once per test run, then only read.
@pytest.fixture(scope="session")
def sim() -> SimResult:
    return simulate(SimConfig(duration_s=600))


@pytest.fixture(scope="session")
def sim_db(tmp_path_factory: pytest.TempPathFactory, sim: SimResult) -> Path:
    path = tmp_path_factory.mktemp("sim") / "sim.duckdb"
    with Store(path) as s:
        s.commit(sim.decoded(), source="sim", fmt="simulator", content_hash="sim")
    return path


@pytest.fixture(scope="module")
def sim_store(sim_db: Path) -> Iterator[Store]:
    with Store(sim_db, read_only=True) as s:
        yield s


def rows(store: Store, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Query results as dicts (column name → value); MAP columns come back as dicts."""
    cur = store.con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


# -- what the Collector's ClickHouse exporter stores for an AnyValue (pdata Value.AsString) ----


def go_float(f: float) -> str:
    """Go's encoding/json float formatting, which pdata's AsString uses for doubles."""
    if math.isnan(f) or math.isinf(f):
        raise ValueError("not representable")
    if f != 0 and (abs(f) < 1e-6 or abs(f) >= 1e21):
        text = repr(f)
        mantissa, exp = text.split("e")
        sign, digits = exp[0], exp[1:].lstrip("0") or "0"
        if sign == "+" and len(digits) < 2:
            digits = digits.rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    text = format(Decimal(repr(f)).normalize(), "f")
    return text


def plain_value(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "bytesValue" in v:
        return v["bytesValue"]
    if "arrayValue" in v:
        return [plain_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return {kv["key"]: plain_value(kv["value"]) for kv in v["kvlistValue"].get("values", [])}
    return None


def _go_json(value: Any) -> str:
    """Go json.Marshal of an AsRaw() value: map keys sorted, floats in Go's format."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_go_json(v) for v in value) + "]"
    return "{" + ",".join(f"{orjson.dumps(k).decode()}:{_go_json(value[k])}"
                          for k in sorted(value)) + "}"


def exporter_string(v: dict[str, Any] | None) -> str:
    if not v:
        return ""
    if "stringValue" in v:
        return str(v["stringValue"])
    if "intValue" in v:
        return str(int(v["intValue"]))
    if "boolValue" in v:
        return "true" if v["boolValue"] else "false"
    if "doubleValue" in v:
        return go_float(float(v["doubleValue"]))
    if "bytesValue" in v:
        return str(v["bytesValue"])
    return _go_json(plain_value(v))


def attrs(kvs: list[dict[str, Any]] | None) -> dict[str, str]:
    return {kv["key"]: exporter_string(kv.get("value")) for kv in kvs or []}


# -- OTLP JSON builders ---------------------------------------------------------------------


def av(value: Any) -> dict[str, Any]:
    """A Python value as an OTLP JSON AnyValue."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [av(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": av(v)} for k, v in value.items()]}}
    return {"stringValue": str(value)}


def kv_list(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": av(v)} for k, v in values.items()]


def span(trace_id: str, span_id: str, name: str = "op", *, parent: str = "", start: int = T0,
         end: int | None = None, kind: int | None = None, status: int | None = None,
         message: str = "", attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": trace_id, "spanId": span_id,
                           "startTimeUnixNano": str(start),
                           "endTimeUnixNano": str(start + 1000 if end is None else end)}
    if name is not None:
        out["name"] = name
    if parent:
        out["parentSpanId"] = parent
    if kind is not None:
        out["kind"] = kind
    if status is not None or message:
        out["status"] = {"code": status or 0, "message": message}
    if attributes:
        out["attributes"] = kv_list(attributes)
    return out


def trace_request(spans: list[dict[str, Any]], service: str = "svc",
                  scope: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": kv_list({"service.name": service})},
        "scopeSpans": [{"scope": scope or {"name": "test.scope", "version": "1.2.3"},
                        "spans": spans}],
    }]}


def jsonl(requests: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in requests)


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


# -- OTLP JSON → protobuf (the JSON mapping with the OTLP hex-id exception undone) -------------

_ID_KEYS = {"traceId", "spanId", "parentSpanId"}
REQUEST_CLASSES = {"resourceSpans": ExportTraceServiceRequest,
                   "resourceLogs": ExportLogsServiceRequest,
                   "resourceMetrics": ExportMetricsServiceRequest}


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (base64.b64encode(bytes.fromhex(v)).decode()
                    if k in _ID_KEYS and isinstance(v, str) else _hex_ids_to_base64(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def json_to_proto(doc: dict[str, Any]) -> Any:
    """An OTLP JSON request as the equivalent Export*ServiceRequest message."""
    (key,) = (k for k in REQUEST_CLASSES if k in doc)
    msg = REQUEST_CLASSES[key]()
    json_format.ParseDict(_hex_ids_to_base64(copy.deepcopy(doc)), msg)
    return msg


def delimited(messages: list[Any]) -> bytes:
    """A varint-length-delimited stream (writeDelimitedTo) of messages."""
    from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]

    out = b""
    for m in messages:
        payload = m.SerializeToString()
        out += _VarintBytes(len(payload)) + payload
    return out


def commit_decoded(tmp_path: Path, decoded: Any, fmt: Any) -> tuple[Store, Any]:
    """Commit one decoded source into a fresh store; the caller closes the store."""
    store = Store(tmp_path / "t.duckdb")
    try:
        return store, store.commit(decoded, source="test", fmt=fmt.value, content_hash="h")
    except BaseException:
        store.close()
        raise
