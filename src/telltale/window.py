"""Time windows from CLI/web options: absolute ISO-8601 or epoch, relative durations (`90s`, `1h`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

NS = 1_000_000_000
_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS,
          "d": 86_400 * NS, "w": 7 * 86_400 * NS}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d|w)\s*$")


class WindowError(ValueError):
    """A time or duration option that cannot be read."""


def parse_duration(text: str) -> int:
    """`90s`, `15m`, `1.5h`, `7d` → nanoseconds."""
    m = _DURATION.match(text)
    if not m:
        raise WindowError(f"bad duration {text!r}: use a number and a unit (ns us ms s m h d w)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_time(text: str, now_ns: int) -> int:
    """ISO-8601 (`2026-01-15T10:00:00Z`), epoch seconds/ns, or a duration ago (`30m`)."""
    text = text.strip()
    if _DURATION.match(text):
        return now_ns - parse_duration(text)
    if re.fullmatch(r"\d{11,19}", text):
        # Epoch integers by magnitude: ms (13 digits), µs (16) or ns (19); 11-12 digits are
        # read as ms too (before 2001 in ms, far future in s).
        digits = len(text)
        scale = 1 if digits >= 18 else 1_000 if digits >= 15 else 1_000_000
        return int(text) * scale
    if re.fullmatch(r"\d+(\.\d+)?", text):
        whole, _, frac = text.partition(".")
        return int(whole) * NS + int((frac + "0" * 9)[:9])
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise WindowError(f"bad time {text!r}: use ISO-8601, epoch seconds or e.g. 30m") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * NS + dt.microsecond * 1_000


def resolve(since: str | None, until: str | None, last: str | None,
            clock: Callable[[], int]) -> tuple[int | None, int | None]:
    """(since, until) in ns; None means open-ended (the analysis uses the data's own range)."""
    now = clock()
    if last is not None:
        if since is not None:
            raise WindowError("--last and --since are exclusive")
        end = parse_time(until, now) if until else now
        return end - parse_duration(last), end
    return (parse_time(since, now) if since else None, parse_time(until, now) if until else None)
