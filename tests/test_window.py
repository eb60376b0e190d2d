"""Time windows from CLI options: durations, absolute and relative times, --last."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conftest import NOW_NS, T0
from telltale.window import NS, WindowError, parse_duration, parse_time, resolve

MIN = 60 * NS


def _clock() -> int:
    return NOW_NS


@pytest.mark.parametrize(("text", "ns"), [
    ("90s", 90 * NS), ("15m", 15 * MIN), ("1.5h", 90 * MIN), ("7d", 7 * 86_400 * NS),
    ("2w", 14 * 86_400 * NS), ("250ms", 250_000_000), ("10us", 10_000), ("5ns", 5),
    (" 2 h ", 2 * 60 * MIN), ("0s", 0), ("0.5s", 500_000_000),
])
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "h", "10", "10x", "-5m", "1e3s", "5 minutes", "m5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(WindowError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "ns"), [
    ("2025-01-01T00:00:00Z", T0),
    ("2025-01-01T00:00:00+00:00", T0),
    ("2025-01-01T02:00:00+02:00", T0),
    ("2024-12-31T19:00:00-05:00", T0),
    ("2025-01-01T00:00:00", T0),  # naive means UTC
    ("2025-01-01", T0),
    ("2025-01-01 00:00:00Z", T0),
    ("2025-01-01T00:00:00.250Z", T0 + 250_000_000),
    ("2025-01-01T00:00:00.123456Z", T0 + 123_456_000),
    ("1735689600", T0),  # epoch seconds
    ("1735689600.5", T0 + 500_000_000),
    ("1735689600000000000", T0),  # epoch nanoseconds
    ("  1735689600  ", T0),
])
def test_parse_time_absolute(text: str, ns: int) -> None:
    assert parse_time(text, NOW_NS) == ns


def test_parse_time_relative_is_before_now() -> None:
    assert parse_time("30m", NOW_NS) == NOW_NS - 30 * MIN
    assert parse_time("1d", NOW_NS) == NOW_NS - 86_400 * NS


def test_parse_time_matches_datetime() -> None:
    for dt in (datetime(2025, 6, 30, 12, 34, 56, 789000, tzinfo=UTC),
               datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)):
        expected = int(dt.replace(microsecond=0).timestamp()) * NS + dt.microsecond * 1000
        assert parse_time(dt.isoformat(), NOW_NS) == expected
        assert parse_time(dt.isoformat().replace("+00:00", "Z"), NOW_NS) == expected


@pytest.mark.parametrize("text", ["yesterday", "2025-13-01", "2025-01-01T25:00:00Z", "",
                                  "12:00 tomorrow", "1h ago"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(WindowError) as info:
        parse_time(text, NOW_NS)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text.strip()) in message or "duration" in message


def test_resolve_open_ended() -> None:
    assert resolve(None, None, None, _clock) == (None, None)


def test_resolve_since_until() -> None:
    assert resolve("2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", None, _clock) == (
        T0, T0 + 86_400 * NS)
    assert resolve("30m", None, None, _clock) == (NOW_NS - 30 * MIN, None)
    assert resolve(None, "10m", None, _clock) == (None, NOW_NS - 10 * MIN)


def test_resolve_last() -> None:
    assert resolve(None, None, "1h", _clock) == (NOW_NS - 60 * MIN, NOW_NS)
    # --last counts back from --until when both are given.
    assert resolve(None, "2025-01-01T01:00:00Z", "1h", _clock) == (T0, T0 + 60 * MIN)


def test_resolve_last_and_since_are_exclusive() -> None:
    with pytest.raises(WindowError, match="exclusive"):
        resolve("2025-01-01", None, "1h", _clock)


def test_resolve_reads_the_clock_once() -> None:
    calls: list[int] = []

    def clock() -> int:
        calls.append(1)
        return NOW_NS + len(calls)  # a moving clock

    since, until = resolve(None, "5m", "1h", clock)
    assert until is not None and since is not None
    assert until - since == 60 * MIN
    assert len(calls) == 1
