"""Log ingest: plain text (multi-line folding, timestamp shapes, severities, --pattern), JSON
lines, syslog, quarantine of binary lines, the Loghub 2k files, and Nezha log↔trace links."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import rows
from telltale.model import Format
from telltale.normalize import json_logs, nezha_logs, syslog, text_logs
from telltale.normalize.csv_spans import PRESETS
from telltale.normalize.log_times import TimeContext, leading_time, parse_time
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded
from telltale.store.duck import Store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LOGHUB = SHARED / "loghub"
NEZHA = SHARED / "nezha" / "trainticket-2023-01-29"


def ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 10**9


def decoded_rows(decoded: Decoded) -> list[dict[str, Any]]:
    return [r for t in decoded.logs for r in t.to_pylist()]


def text(data: str | bytes, **mapping: Any) -> Decoded:
    raw = data.encode() if isinstance(data, str) else data
    return text_logs.decode(raw, DecodeOptions(mapping=mapping))


@pytest.mark.parametrize(("line", "expected"), [
    ("2024-01-15T10:00:00Z x", ns(2024, 1, 15, 10)),
    ("2024-01-15T10:00:00.5+02:00 x", ns(2024, 1, 15, 8) + 500_000_000),
    ("2024-01-15 10:00:00,123 x", ns(2024, 1, 15, 10) + 123_000_000),
    ("2024/01/15 10:00:00 x", ns(2024, 1, 15, 10)),
    ("Jan 15 10:00:00 host x", ns(2023, 1, 15, 10)),
    ("[Sun Dec 04 04:47:44 2005] [notice] x", ns(2005, 12, 4, 4, 47, 44)),
    ("081109 203615 148 INFO x", ns(2008, 11, 9, 20, 36, 15)),
    ("1705312800 x", ns(2024, 1, 15, 10)),
    ("1705312800123 x", ns(2024, 1, 15, 10) + 123_000_000),
    ("[15/Jan/2024:10:00:00 +0100] x", ns(2024, 1, 15, 9)),
])
def test_timestamp_shapes(line: str, expected: int) -> None:
    found = leading_time(line, TimeContext.of(None, 2023))
    assert found is not None and found[0] == expected


def test_zone_option_and_invalid_dates() -> None:
    ctx = TimeContext.of("Europe/Paris", 2024)
    assert parse_time("2024-01-15 10:00:00", ctx) == ns(2024, 1, 15, 9)
    assert parse_time("2024-01-15 10:00:00Z", ctx) == ns(2024, 1, 15, 10)  # stated zone wins
    assert parse_time("2024-02-31 10:00:00", ctx) is None
    assert parse_time(1705312800.5, ctx) == ns(2024, 1, 15, 10) + 500_000_000


JAVA = """\
2024-01-15 10:00:00,001 INFO  [main] c.e.App - started
2024-01-15 10:00:01,002 ERROR [worker-1] c.e.Job - job failed
java.lang.IllegalStateException: boom
\tat com.example.Job.run(Job.java:42)
\tat java.base/java.lang.Thread.run(Thread.java:833)
Caused by: java.io.IOException: disk full
\t... 2 more
2024-01-15 10:00:02,003 WARN  [main] c.e.App - retrying
"""


def test_stack_trace_folds_into_its_record() -> None:
    out = decoded_rows(text(JAVA))
    assert [r["SeverityNumber"] for r in out] == [9, 17, 13]
    assert out[1]["Body"].startswith("[worker-1] c.e.Job - job failed\njava.lang.Illegal")
    assert out[1]["Body"].endswith("\t... 2 more")
    assert out[1]["Pos"] == "lines 2-7"
    assert out[2]["Timestamp"] == ns(2024, 1, 15, 10, 0, 2) + 3_000_000


def test_multiline_start_option_and_every_line_fallback() -> None:
    data = "BEGIN a\n  more\nBEGIN b\nnext\n"
    assert len(decoded_rows(text(data, multiline_start=r"BEGIN "))) == 2
    assert len(decoded_rows(text(data, multiline_start="line"))) == 4
    # No line starts a record by the default rule: every line is its own record, with no time.
    plain = decoded_rows(text("hello\nworld\n"))
    assert [r["Body"] for r in plain] == ["hello", "world"] and plain[0]["Timestamp"] is None


@pytest.mark.parametrize(("word", "number"), [
    ("TRACE", 1), ("DEBUG", 5), ("INFO", 9), ("WARN", 13), ("WARNING", 13), ("ERROR", 17),
    ("SEVERE", 17), ("FATAL", 21), ("CRITICAL", 21), ("[error]", 17), ("<warn>", 13),
])
def test_severities(word: str, number: int) -> None:
    out = decoded_rows(text(f"2024-01-15T10:00:00Z {word} something happened\n"))
    assert out[0]["SeverityNumber"] == number
    assert out[0]["Body"] == "something happened"


def test_lower_case_words_in_messages_are_not_levels() -> None:
    out = decoded_rows(text("2024-01-15T10:00:00Z user info updated\n"))
    assert out[0]["SeverityNumber"] == 0 and out[0]["Body"] == "user info updated"


def test_pattern_named_groups() -> None:
    pattern = (r"(?P<time>\S+) \[(?P<service>[^\]]+)\] (?P<level>\w+) (?P<logger>\S+) "
               r"trace=(?P<trace_id>\w+) req=(?P<request>\d+): (?P<message>.*)")
    data = ("2024-01-15T10:00:00Z [cart] error c.Cart trace=0AF7651916CD43DD8448EB211C80319C "
            "req=7: payment declined\n  detail line\ngarbage first?\n")
    out = text("junk before\n" + data, pattern=pattern)
    got = decoded_rows(out)
    assert len(got) == 1 and got[0]["ServiceName"] == "cart"
    assert got[0]["SeverityNumber"] == 17
    assert got[0]["TraceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert got[0]["Body"] == "payment declined\n  detail line\ngarbage first?"
    assert dict(got[0]["LogAttributes"])["request"] == "7"
    assert [(r.position, r.reason) for r in out.rejects] == [("line 1", "unparsable")]


def test_ids_embedded_in_text_are_linked() -> None:
    out = decoded_rows(text(
        "2024-01-15T10:00:00Z INFO TraceID: ffc8ca7e4c8f06c75142c880d5595d96 "
        "SpanID: 439bc949a9eeb0cc hello\n"
        "2024-01-15T10:00:01Z INFO traceparent=00-0af7651916cd43dd8448eb211c80319c-"
        "b7ad6b7169203331-01 there\n"))
    assert (out[0]["TraceId"], out[0]["SpanId"]) == ("ffc8ca7e4c8f06c75142c880d5595d96",
                                                     "439bc949a9eeb0cc")
    assert out[1]["SpanId"] == "b7ad6b7169203331"


def test_json_lines_fields_detected_and_overridable() -> None:
    data = (b'{"ts": 1705312800.25, "level": "warn", "msg": "slow", "logger": "db", '
            b'"trace_id": "0AF7651916CD43DD8448EB211C80319C", "spanId": "b7ad6b7169203331", '
            b'"ctx": {"user": "u1", "n": 3}}\n'
            b'{"@timestamp": "2024-01-15T10:00:00Z", "severity": 50, "message": "x"}\n'
            b'{"time": "2024-01-15T10:00:00Z", "log": "12:00 ERROR boom\\n", "stream": "stderr"}\n'
            b'not json\n[1]\n')
    out = text(data)
    got = decoded_rows(out)
    assert got[0]["Timestamp"] == ns(2024, 1, 15, 10) + 250_000_000
    assert (got[0]["SeverityText"], got[0]["SeverityNumber"]) == ("WARN", 13)
    assert got[0]["TraceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert got[0]["SpanId"] == "b7ad6b7169203331"
    assert dict(got[0]["LogAttributes"]) == {"ctx.user": "u1", "ctx.n": "3", "logger": "db"}
    assert got[1]["SeverityNumber"] == 17  # pino's 50
    assert (got[2]["Body"], got[2]["SeverityNumber"]) == ("12:00 ERROR boom", 17)
    assert sorted(r.reason for r in out.rejects) == ["bad_shape", "unparsable"]
    over = decoded_rows(json_logs.decode(b'{"when": 1705312800, "text": "hi", "msg": "no"}\n',
                                         DecodeOptions(mapping={"time": "when", "message": "text"})))
    assert (over[0]["Body"], over[0]["Timestamp"]) == ("hi", ns(2024, 1, 15, 10))


def test_syslog_both_rfcs() -> None:
    data = (b'<34>1 2024-01-15T10:00:00.003Z mymachine su 123 ID47 [exampleSDID@32473 '
            b'iut="3" eventSource="App"] su root failed\n'
            b"<13>Jan 15 10:00:00 host1 sshd[42]: Accepted password\n"
            b"Jan 15 10:00:01 host1 kernel: eth0 up\n"
            b"this is not syslog\n")
    out = syslog.decode(data, DecodeOptions(mapping={"year": 2024}))
    got = decoded_rows(out)
    assert got[0]["Timestamp"] == ns(2024, 1, 15, 10) + 3_000_000
    assert (got[0]["SeverityText"], got[0]["SeverityNumber"], got[0]["ServiceName"]) == \
        ("CRIT", 21, "su")
    attrs = dict(got[0]["LogAttributes"])
    assert attrs["exampleSDID@32473.iut"] == "3" and attrs["syslog.facility"] == "auth"
    assert (got[1]["ServiceName"], got[1]["SeverityNumber"], got[1]["Body"]) == \
        ("sshd", 10, "Accepted password")
    assert dict(got[2]["ResourceAttributes"])["host.name"] == "host1"
    assert [r.reason for r in out.rejects] == ["unparsable"]
    assert len(decoded_rows(text(data[:-19], year=2024))) == 3  # routed from --format log


def test_binary_garbage_is_quarantined(store: Store) -> None:
    data = (b"2024-01-15T10:00:00Z INFO ok\n\x00\x01\x02\xff binary\n"
            b"2024-01-15T10:00:01Z INFO caf\xe9 latin-1\n2024-01-15T10:00:02Z ERROR fine\n")
    out = text(data)
    assert sorted(r.position for r in out.rejects) == ["line 2", "line 3"]
    assert {r.reason for r in out.rejects} == {"bad_encoding"}
    report = store.commit(out, source="bin.log", fmt=Format.LOG_TEXT.value
                          if hasattr(Format, "LOG_TEXT") else "log", content_hash="h-bin")
    assert report.batch_id is not None
    assert rows(store, "SELECT count(*) AS n FROM otel_logs")[0]["n"] == 2
    assert rows(store, "SELECT count(*) AS n FROM telltale_quarantine")[0]["n"] == 2


@pytest.mark.parametrize("name", ["Apache", "HDFS", "Linux", "OpenSSH", "Zookeeper"])
def test_loghub_2k_files(store: Store, name: str) -> None:
    path = LOGHUB / f"{name}_2k.log"
    if not path.exists():
        pytest.skip(f"{path} absent (shared Loghub data not available)")
    data = path.read_bytes()
    out = text_logs.decode(data, DecodeOptions(source=str(path), mapping={"year": 2005}))
    assert not out.rejects
    store.commit(out, source=str(path), fmt="log", content_hash=f"h-{name}")
    got = rows(store, "SELECT count(*) AS n, count(*) FILTER (WHERE Timestamp < 1.3e18) AS old, "
                      "count(*) FILTER (WHERE SeverityNumber > 0) AS lv FROM otel_logs")[0]
    assert got["n"] == 2000  # every Loghub 2k line is one record (none is multi-line)
    assert got["old"] == 2000 or name == "Zookeeper"  # the files' own times, not ingest time
    assert got["lv"] == (0 if name in ("Linux", "OpenSSH") else 2000)


def test_nezha_logs_link_to_stored_spans(store: Store) -> None:
    logs = sorted((NEZHA / "log").glob("*_log.csv.gz")) if (NEZHA / "log").is_dir() else []
    if not logs or not (NEZHA / "trace").is_dir():
        pytest.skip(f"{NEZHA} absent (shared Nezha data not available)")
    from telltale.ingest import ingest_paths

    ingest_paths(store, [str(NEZHA / "trace")], mapping=dict(PRESETS["nezha"]))
    for path in logs:
        data = gzip.decompress(path.read_bytes())
        # The container lines as a plain text log: ISO time + the line; ids come from the text.
        inner = "\n".join(f"{r['Timestamp']} " + r["Body"].replace("\n", " ") for r in
                          decoded_rows(nezha_logs.decode(data, path.name)))
        store.commit(text_logs.decode(inner.encode(), DecodeOptions(mapping={"year": 2023})),
                     source=str(path), fmt="log", content_hash=f"h-{path.name}")
    got = rows(store, """
        SELECT count(*) AS n, count(*) FILTER (WHERE l.TraceId <> '') AS with_ids,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM otel_traces t
                   WHERE t.TraceId = l.TraceId AND t.SpanId = l.SpanId)) AS joined
        FROM otel_logs l""")[0]
    assert got["with_ids"] > 0.9 * got["n"]
    assert got["joined"] > 0.8 * got["with_ids"], got


def test_follow_appends_holds_back_open_record_and_survives_rotation(store: Store,
                                                                     tmp_path: Path) -> None:
    from telltale.normalize.log_follow import follow

    log = tmp_path / "app.log"
    log.write_text("2024-01-15T10:00:00Z INFO one\n")
    seen: list[int] = []

    def count() -> int:
        return int(rows(store, "SELECT count(*) AS n FROM otel_logs")[0]["n"])

    def append(text: str) -> None:
        with log.open("a") as f:
            f.write(text)

    steps = [
        lambda: append("2024-01-15T10:00:01Z ERROR two\njava.lang.Error: x\n"),
        lambda: append("\tat A.b(A.java:1)\n2024-01-15T10:00:02Z INFO three\n"),
        lambda: (log.rename(tmp_path / "app.log.1"),
                 append("2024-01-15T10:00:03Z INFO four (after rotation)\n")),
        lambda: log.write_text("2024-01-15T10:00:04Z INFO five (truncated)\n"),
    ]

    def stop() -> bool:
        seen.append(count())
        if not steps:
            return True
        steps.pop(0)()
        return False

    state = follow(store, log, poll_s=0, quiet_s=60, stop=stop)
    # The open record is held back: "one" only once "two" starts; "two" (with its trace) once
    # "three" starts; "three" when the file rotates (the new file read from its start); "four"
    # when the file is truncated; "five" at the final drain.
    assert seen == [0, 1, 2, 3, 4]
    assert count() == 5 and state.rotations == 2
    bodies = [r["Body"] for r in rows(store, "SELECT Body FROM otel_logs ORDER BY Timestamp")]
    assert bodies[1] == "two\njava.lang.Error: x\n\tat A.b(A.java:1)"
    assert bodies[3:] == ["four (after rotation)", "five (truncated)"]


def test_follow_restarted_resumes_after_what_it_committed(store: Store, tmp_path: Path) -> None:
    from telltale.normalize.log_follow import follow

    log = tmp_path / "app.log"
    log.write_text("2024-01-15T10:00:00Z INFO one\n2024-01-15T10:00:01Z INFO two\n")
    def append(text: str) -> None:
        with log.open("a") as f:
            f.write(text)

    steps = [lambda: append("2024-01-15T10:00:02Z INFO three\n")]

    def once() -> bool:
        if steps:
            steps.pop(0)()
            return False
        return True

    def bodies() -> list[str]:
        return [r["Body"] for r in rows(store, "SELECT Body FROM otel_logs ORDER BY Timestamp")]

    first = follow(store, log, poll_s=0, quiet_s=0, stop=once)
    assert bodies() == ["one", "two", "three"] and len(first.reports) == 2
    append("2024-01-15T10:00:03Z WARN four\n")
    again = follow(store, log, poll_s=0, quiet_s=60, stop=lambda: True)  # a restart
    assert bodies() == ["one", "two", "three", "four"]
    quarantine = rows(store, "SELECT Position FROM telltale_quarantine")
    assert [r.source for r in again.reports] == [f"{log}:4"] and not quarantine
    # The same path rewritten in place (same inode, other bytes): read from its start.
    log.write_text("2024-01-15T11:00:00Z INFO five\n")
    follow(store, log, poll_s=0, quiet_s=60, stop=lambda: True)
    assert bodies()[-1] == "five" and len(bodies()) == 5


def test_cli_pattern_and_auto_detection(tmp_path: Path) -> None:
    """`ingest` detects plain log lines by itself, and `--pattern` reads a custom format."""
    from click.testing import CliRunner

    from telltale.cli import main

    db = tmp_path / "cli.duckdb"
    plain = tmp_path / "app.log"
    plain.write_text("2024-01-15 10:00:00,123 INFO  app started\n"
                     "2024-01-15 10:00:01,000 ERROR failed\njava.lang.RuntimeException: boom\n"
                     "    at a.b(C.java:1)\n")
    custom = tmp_path / "custom.log"
    custom.write_text('when=1700000000 lvl=error msg="disk full"\n')
    runner = CliRunner()
    first = runner.invoke(main, ["--db", str(db), "ingest", str(plain), "--output", "json"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(main, ["--db", str(db), "ingest", str(custom), "--output", "json",
                                  "--pattern", r'when=(?P<time>\d+) lvl=(?P<level>\w+) '
                                               r'msg="(?P<message>[^"]*)"'])
    assert second.exit_code == 0, second.output
    with Store(db, read_only=True) as store:
        rows = store.query("SELECT SeverityNumber, Body FROM otel_logs ORDER BY Timestamp")
    assert rows == [(17, "disk full"), (9, "app started"),
                    (17, "failed\njava.lang.RuntimeException: boom\n    at a.b(C.java:1)")]
