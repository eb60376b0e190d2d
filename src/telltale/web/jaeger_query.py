"""The Jaeger query API's request parameters, parsed the way Jaeger's query service parses them.

`/api/traces`: `service` (required unless `traceID` is given, repeatable), `operation`,
`start` / `end` (µs since the epoch), `lookback` (the UI's "1h", "2d"... used when `start` is
absent), `minDuration` / `maxDuration` (Go durations: "1.2s", "100ms", "500us"), `limit`,
`tag=key:value` (repeatable) and `tags` (a JSON object, or logfmt `k=v k2="v 2"` as typed into
Grafana's search box). `/api/dependencies`: `endTs` and `lookback` in ms.
`/api/v3/traces`: `query.service_name`, `query.operation_name`, `query.start_time_min|max`
(RFC 3339), `query.duration_min|max`, `query.num_traces`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from telltale.analyses.trace_detail import normalize_trace_id

DEFAULT_LIMIT = 20  # what the Jaeger UI asks for; a larger limit costs one trace read per trace
MAX_LIMIT = 1500  # the Jaeger UI's own maximum
DEFAULT_DEPS_LOOKBACK_MS = 24 * 3600 * 1000  # Jaeger's defaultDependencyLookbackDuration

_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
             "s": 1_000_000_000, "m": 60 * 1_000_000_000, "h": 3600 * 1_000_000_000}
_GO_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_LOOKBACK = re.compile(r"(\d+)([smhdw])")
_LOOKBACK_NS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


class ParamError(ValueError):
    """A malformed request parameter: answered with 400 and Jaeger's error envelope."""


class Params:
    """Query parameters with repeats (Starlette's QueryParams fits; so does a dict of lists)."""

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self.items = list(items)

    def get(self, key: str) -> str:
        """The first non-empty value (Go's FormValue returns the first one)."""
        return next((v for k, v in self.items if k == key and v != ""), "")

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self.items if k == key and v != ""]


@dataclass(frozen=True)
class TraceQuery:
    service: str | None = None
    operation: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    errors_only: bool = False
    limit: int = DEFAULT_LIMIT
    trace_ids: tuple[str, ...] = ()


def go_duration_ns(text: str, name: str) -> int:
    """Go's time.ParseDuration, in ns ("1h2m", "1.5s", "300ms", "0")."""
    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("+-")
    if s == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _GO_PART.match(s, pos)
        if not m:
            raise ParamError(f"unable to parse param '{name}': time: invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    if not s:
        raise ParamError(f"unable to parse param '{name}': time: invalid duration {text!r}")
    return sign * round(total)


def lookback_ns(text: str) -> int | None:
    """The UI's lookback ("1h", "2d", "1w"); None for "custom" (start / end then rule)."""
    m = _LOOKBACK.fullmatch(text.strip())
    if m:
        return int(m.group(1)) * _LOOKBACK_NS[m.group(2)] * 1_000_000_000
    if text.strip() in ("", "custom"):
        return None
    raise ParamError(f"unable to parse param 'lookback': {text!r} (expected e.g. 1h, 2d or custom)")


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ParamError(f"unable to parse param '{name}': strconv.ParseInt: parsing {text!r}: "
                         "invalid syntax") from None


def trace_id(text: str) -> str:
    """A trace id as stored: 32 lowercase hex chars (shorter ids are zero-padded, as Jaeger's
    TraceIDFromString reads a 64-bit id)."""
    tid = normalize_trace_id(text) if text == text.strip() else None
    if tid is None:
        raise ParamError(f"cannot parse traceID param: {text!r} is not a hex trace id of at most "
                         "32 characters")
    return tid


def _tag_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def parse_tags(simple: list[str], blobs: list[str]) -> dict[str, str]:
    """`tag=k:v` pairs and `tags` JSON objects (or logfmt) into one map, later ones winning."""
    tags: dict[str, str] = {}
    for item in simple:
        key, sep, value = item.partition(":")
        if not sep:
            raise ParamError(f"malformed 'tag' parameter, expecting key:value, received: {item}")
        tags[key] = value
    for blob in blobs:
        if blob.lstrip().startswith("{"):
            try:
                obj = orjson.loads(blob)
            except orjson.JSONDecodeError as exc:
                raise ParamError(f"malformed 'tags' parameter, cannot unmarshal JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise ParamError("malformed 'tags' parameter: expected a JSON object")
            tags.update({str(k): _tag_value(v) for k, v in obj.items()})
            continue
        try:
            words = shlex.split(blob)
        except ValueError as exc:
            raise ParamError(f"malformed 'tags' parameter: {exc}") from None
        for word in words:
            key, sep, value = word.partition("=")
            if not sep or not key:
                raise ParamError(f"malformed 'tags' parameter, expecting key=value, received: {word}")
            tags[key] = value
    return tags


def _split_error_tag(tags: dict[str, str]) -> tuple[dict[str, str], bool]:
    """`error=true` (and `otel.status_code=ERROR`) select spans with error status: those are
    tags the translator derives from the status, not stored attributes."""
    rest = dict(tags)
    errors_only = False
    if rest.get("error", "").lower() == "true":
        del rest["error"]
        errors_only = True
    if rest.get("otel.status_code", "").upper() == "ERROR":
        del rest["otel.status_code"]
        errors_only = True
    return rest, errors_only


def _limit(text: str, name: str) -> int:
    if not text:
        return DEFAULT_LIMIT
    n = _int(text, name)
    return DEFAULT_LIMIT if n <= 0 else min(n, MAX_LIMIT)


def _durations(low: str, high: str, low_name: str, high_name: str) -> tuple[int | None, int | None]:
    lo = go_duration_ns(low, low_name) if low else None
    hi = go_duration_ns(high, high_name) if high else None
    if lo and hi and hi < lo:
        raise ParamError(f"'{high_name}' should be greater than '{low_name}'")
    return lo or None, hi or None


def parse_trace_query(params: Params, now_ns: int) -> TraceQuery:
    """`/api/traces` parameters. Without `start`, a `lookback` counts back from `end` (or now);
    with neither the search is not bounded below (telltale often holds imported history)."""
    until = _int(params.get("end"), "end") * 1000 if params.get("end") else None
    since = _int(params.get("start"), "start") * 1000 if params.get("start") else None
    if since is None and (back := lookback_ns(params.get("lookback"))) is not None:
        since = (until if until is not None else now_ns) - back
    lo, hi = _durations(params.get("minDuration"), params.get("maxDuration"),
                        "minDuration", "maxDuration")
    tags, errors_only = _split_error_tag(parse_tags(params.getlist("tag"), params.getlist("tags")))
    ids = tuple(dict.fromkeys(trace_id(t) for t in params.getlist("traceID")))
    service = params.get("service") or None
    if not ids and not service:
        raise ParamError("parameter 'service' is required")
    return TraceQuery(service=service, operation=params.get("operation") or None,
                      since_ns=since, until_ns=None if until is None else until + 1000,
                      min_duration_ns=lo, max_duration_ns=hi, attributes=tags,
                      errors_only=errors_only, limit=_limit(params.get("limit"), "limit"),
                      trace_ids=ids)


_FRACTION = re.compile(r"(T\d\d:\d\d:\d\d)\.(\d+)")


def _rfc3339_ns(text: str, name: str) -> int:
    """RFC 3339 with up to nanosecond fractions (Go's RFC3339Nano), as ns since the epoch."""
    text = text.strip().replace(" ", "+")  # an unencoded '+01:00' arrives as ' 01:00'
    fraction = _FRACTION.search(text)
    digits = fraction.group(2) if fraction else ""
    plain = _FRACTION.sub(r"\1", text) if fraction else text
    try:
        moment = datetime.fromisoformat(plain)
    except ValueError:
        raise ParamError(f"malformed parameter {name}: {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ParamError(f"malformed parameter {name}: {text!r} has no time zone")
    return int(moment.timestamp()) * 1_000_000_000 + int(digits[:9].ljust(9, "0"))


def parse_v3_query(params: Params) -> TraceQuery:
    """`/api/v3/traces` parameters (Jaeger requires both time bounds)."""
    low, high = params.get("query.start_time_min"), params.get("query.start_time_max")
    if not low or not high:
        raise ParamError("query.start_time_min and query.start_time_max are required")
    lo, hi = _durations(params.get("query.duration_min"), params.get("query.duration_max"),
                        "query.duration_min", "query.duration_max")
    return TraceQuery(service=params.get("query.service_name") or None,
                      operation=params.get("query.operation_name") or None,
                      since_ns=_rfc3339_ns(low, "query.start_time_min"),
                      until_ns=_rfc3339_ns(high, "query.start_time_max") + 1,
                      min_duration_ns=lo, max_duration_ns=hi,
                      limit=_limit(params.get("query.num_traces"), "query.num_traces"))


def parse_dependencies(params: Params, now_ns: int) -> tuple[int, int]:
    """`/api/dependencies`: the window [endTs - lookback, endTs] in ns (inputs in ms)."""
    end_ms = _int(params.get("endTs"), "endTs") if params.get("endTs") else now_ns // 1_000_000
    back_ms = (_int(params.get("lookback"), "lookback") if params.get("lookback")
               else DEFAULT_DEPS_LOOKBACK_MS)
    return (end_ms - back_ms) * 1_000_000, end_ms * 1_000_000 + 1


def params_of(query: Mapping[str, str] | Sequence[tuple[str, str]]) -> Params:
    return Params(list(query.items()) if isinstance(query, Mapping) else list(query))
