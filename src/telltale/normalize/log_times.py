"""Timestamps and severities as log lines write them, normalised to ns UTC and OTel numbers.

One ordered list of regexes covers the common shapes (ISO-8601, `2024-01-15 10:00:00,123`,
syslog `Jan 15 10:00:00`, Apache `[Sun Dec 04 04:47:44 2005]`, HDFS `081109 203615`, epoch
seconds/ms/µs/ns); the first that matches wins, so there is no per-dataset code. Zone-less
times are read in the given zone (UTC unless told), year-less ones in the given year.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_MON = r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*"
_HMS = r"(?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2})(?:[.,](?P<frac>\d{1,9}))?"
_ZONE = r"(?:\s?(?P<zone>Z|UTC|GMT|[+-]\d{2}:?\d{2})\b)?"

# Ordered: the most specific shapes first, so `2024-01-15` is never read as an epoch.
_PATTERNS = [re.compile(p, re.I) for p in (
    rf"(?P<y>\d{{4}})[-/](?P<m>\d{{2}})[-/](?P<d>\d{{2}})[T ]{_HMS}{_ZONE}",
    rf"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,? )?{_MON} +(?P<d>\d{{1,2}}) {_HMS} (?P<y>\d{{4}})",
    rf"(?P<d>\d{{2}})/{_MON}/(?P<y>\d{{4}}):{_HMS}{_ZONE}",
    rf"{_MON} +(?P<d>\d{{1,2}}) {_HMS}{_ZONE}",
    r"(?P<yy>\d{2})(?P<m>\d{2})(?P<d>\d{2}) (?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})\b",
    r"(?P<epoch>\d{10}|\d{13}|\d{16}|\d{19})(?:\.(?P<efrac>\d{1,9}))?\b",
)]
_LEAD = re.compile(r"[\[(<]?")


@dataclass(frozen=True)
class TimeContext:
    """How to read incomplete timestamps: the zone of zone-less ones, the year of year-less."""

    zone: tzinfo = UTC
    year: int = 0  # 0: the current year

    @staticmethod
    def of(zone: str | None, year: int | None) -> TimeContext:
        tz: tzinfo = UTC if not zone or zone.upper() == "UTC" else ZoneInfo(zone)
        return TimeContext(tz, year or datetime.now(UTC).year)


def _zone(text: str | None, default: tzinfo) -> tzinfo:
    if not text:
        return default
    if text.upper() in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


def _to_ns(g: dict[str, str | None], ctx: TimeContext) -> int | None:
    if g.get("epoch"):
        digits = g["epoch"] or ""
        scale = {10: 10**9, 13: 10**6, 16: 10**3, 19: 1}[len(digits)]
        frac = (g.get("efrac") or "")
        extra = int(frac.ljust(9, "0")[:9]) * scale // 10**9 if frac else 0
        return int(digits) * scale + extra
    if g.get("y"):
        year = int(g["y"] or 0)
    elif g.get("yy"):
        year = 2000 + int(g["yy"] or 0)
    else:
        year = ctx.year
    month = _MONTHS[(g["mon"] or "")[:3].lower()] if g.get("mon") else int(g["m"] or 0)
    try:
        moment = datetime(year, month, int(g["d"] or 0), int(g["H"] or 0), int(g["M"] or 0),
                          int(g["S"] or 0), tzinfo=_zone(g.get("zone"), ctx.zone))
    except ValueError:  # 31 February, hour 25...: a timestamp-shaped string that is not one
        return None
    frac = g.get("frac") or ""
    return int(moment.timestamp()) * 10**9 + (int(frac.ljust(9, "0")) if frac else 0)


def leading_time(text: str, ctx: TimeContext) -> tuple[int, int] | None:
    """(ns UTC, end offset) of a timestamp that starts `text` (after one `[`, `(` or `<`)."""
    start = _LEAD.match(text)
    at = start.end() if start else 0
    for pattern in _PATTERNS:
        found = pattern.match(text, at)
        if found:
            ns = _to_ns(found.groupdict(), ctx)
            if ns is None:
                return None
            end = found.end()
            if at and end < len(text) and text[end] in "])>":
                end += 1
            return ns, end
    return None


def parse_time(value: object, ctx: TimeContext) -> int | None:
    """A timestamp field's value (a string in any known shape, or epoch s/ms/µs/ns) → ns UTC."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        magnitude = abs(value)
        scale = 10**9 if magnitude < 1e11 else 10**6 if magnitude < 1e14 else \
            10**3 if magnitude < 1e17 else 1
        # Decimal: a float's binary error would otherwise show in the nanoseconds.
        return int(Decimal(repr(value)) * scale)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text) and not re.fullmatch(r"\d{6} \d{6}", text):
        return parse_time(float(text) if "." in text else int(text), ctx)
    found = leading_time(text, ctx)
    return found[0] if found else None


# Severity words (and their common spellings) → OTel severity numbers (first of each range).
SEVERITIES = {
    "TRACE": 1, "FINEST": 1, "FINER": 2, "VERBOSE": 1, "DEBUG": 5, "DBG": 5, "FINE": 5,
    "CONFIG": 6, "INFO": 9, "INFORMATION": 9, "NOTICE": 10, "WARN": 13, "WARNING": 13,
    "ERROR": 17, "ERR": 17, "SEVERE": 17, "CRITICAL": 21, "CRIT": 21, "FATAL": 21,
    "ALERT": 22, "EMERG": 23, "EMERGENCY": 23, "PANIC": 23,
}
# Syslog priorities 0..7 (emerg..debug) → OTel numbers.
SYSLOG_SEVERITY = (23, 22, 21, 17, 13, 10, 9, 5)
SYSLOG_NAMES = ("EMERG", "ALERT", "CRIT", "ERR", "WARNING", "NOTICE", "INFO", "DEBUG")
_WORDS = "|".join(sorted(SEVERITIES, key=len, reverse=True))
# A level is an upper-case word, or any case inside brackets (`[error]`, `<warn>`).
LEVEL = re.compile(rf"(?<![\w.$])(?:(?P<up>{_WORDS})|[\[<](?P<br>(?i:{_WORDS}))[\]>])(?![\w.$])")


def severity(value: object) -> tuple[str, int]:
    """(SeverityText, SeverityNumber) of a level field: a word, an OTel number, or a pino
    level (10 trace … 60 fatal); ('', 0) when unknown."""
    if isinstance(value, bool) or value is None:
        return "", 0
    if isinstance(value, int | float):
        number = int(value)
        if number in (10, 20, 30, 40, 50, 60):  # pino / bunyan
            return ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")[number // 10 - 1], \
                (1, 5, 9, 13, 17, 21)[number // 10 - 1]
        return str(number), number if 1 <= number <= 24 else 0
    text = str(value).strip()
    return text.upper(), SEVERITIES.get(text.upper(), 0)


def level_in(text: str) -> re.Match[str] | None:
    """The first level word near the start of a log line's text (after its timestamp)."""
    return LEVEL.search(text, 0, 64)
