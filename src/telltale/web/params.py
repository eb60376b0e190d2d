"""Query-string parameters of the dashboard and its API: the time window and trace-search filters.

Stores hold simulated or imported data that need not end "now", so the window is read against the
data: no parameters means the store's whole range, and `last` (or a relative `since` such as
`30m`) counts back from `until`, or from the end of the data when `until` is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from telltale.analyses.scope import Scope
from telltale.analyses.trace_detail import normalize_trace_id
from telltale.store import Store
from telltale.store.quality_sql import time_range
from telltale.window import WindowError, parse_duration, resolve

MAX_LIMIT = 500


class BadParam(ValueError):
    """A query parameter that cannot be read: the answer is 400 with this one-line message."""


@dataclass(frozen=True)
class Window:
    """The window asked for (None: open) and the store's data range (None: an empty store)."""

    since: int | None
    until: int | None
    data_lo: int | None
    data_hi: int | None
    query: dict[str, str] = field(default_factory=dict)  # the window params as given, for links

    @property
    def lo(self) -> int | None:
        return self.since if self.since is not None else self.data_lo

    @property
    def hi(self) -> int | None:
        """Exclusive end: the asked end, or just past the last data."""
        if self.until is not None:
            return self.until
        return None if self.data_hi is None else self.data_hi + 1

    def scope(self, services: tuple[str, ...] = (), operations: tuple[str, ...] = ()) -> Scope:
        return Scope(self.since, self.until, services, operations)

    def describe(self) -> str:
        if self.lo is None or self.hi is None:
            return "no data"
        whole = " (all data)" if self.since is None and self.until is None else ""
        return f"{iso(self.lo)} → {iso(self.hi)}{whole}"


def iso(ns: int) -> str:
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    millis = ns % 1_000_000_000 // 1_000_000
    return f"{stamp}.{millis:03d}Z" if millis else f"{stamp}Z"


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    return value.strip() if value and value.strip() else None


def window(store: Store, params: Mapping[str, str]) -> Window:
    lo, hi = time_range(store.con)
    since, until, last = (_text(params, k) for k in ("since", "until", "last"))
    end_of_data = (hi if hi is not None else 0) + 1
    try:
        start, end = resolve(since, until, last, lambda: end_of_data)
    except WindowError as exc:
        raise BadParam(str(exc).replace("--", "")) from exc
    if start is not None and end is not None and start >= end:
        raise BadParam("the window is empty: since must be before until")
    given = {k: v for k, v in (("since", since), ("until", until), ("last", last)) if v}
    return Window(start, end, lo, hi, given)


def duration(params: Mapping[str, str], name: str) -> int | None:
    """A duration filter: `250ms`, `1.5s`, or a bare number of milliseconds."""
    text = _text(params, name)
    if text is None:
        return None
    try:
        return int(float(text) * 1_000_000) if _is_number(text) else parse_duration(text)
    except WindowError as exc:
        raise BadParam(f"{name}: {exc}") from exc


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def attributes(params: Mapping[str, str], values: list[str]) -> dict[str, str]:
    """`key=value` filters, from repeated `attr` parameters or one per line of a text box."""
    out: dict[str, str] = {}
    for raw in values:
        for line in raw.splitlines():
            line = line.strip()
            if not line:
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise BadParam(f"attribute filter {line!r}: use key=value")
            out[key.strip()] = value.strip()
    return out


def limit(params: Mapping[str, str], default: int = 50) -> int:
    text = _text(params, "limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadParam(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def flag(params: Mapping[str, str], name: str) -> bool:
    text = (_text(params, name) or "").lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise BadParam(f"{name} must be true or false")


def choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    text = _text(params, name) or default
    if text not in allowed:
        raise BadParam(f"{name} must be one of {', '.join(allowed)}")
    return text


def trace_id(text: str) -> str:
    tid = normalize_trace_id(text)
    if tid is None:
        raise BadParam("a trace id is up to 32 hex digits")
    return tid
