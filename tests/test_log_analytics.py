"""Log analytics over assigned templates, checked against counts worked out by hand from a
generated log: templates by count, error share, new templates, rate changes (exact test and
Benjamini–Hochberg by hand), top parameter values, search, and the CLI in every format."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from math import comb
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import pinned_settings
from telltale.analyses import log_analytics as la
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.model import Format
from telltale.settings import ENV_DB
from telltale.store import Store, log_assign

GOLDEN = Path(__file__).parent / "golden" / "log_templates.json"
UPDATE = os.environ.get("TELLTALE_UPDATE_GOLDEN") == "1"
PATTERN = (r"(?P<time>\S+) (?P<level>\w+) (?P<service>\S+) "
           r"(?:trace=(?P<trace_id>[0-9a-f]{32}) )?(?P<message>.*)")
TRACE = "0af7651916cd43dd8448eb211c80319c"
S = 1_000_000_000


def ns(hour: int, minute: int = 0, second: int = 0) -> int:
    return int(datetime(2025, 12, 31, hour, minute, second, tzinfo=UTC).timestamp()) * S


BASE, WINDOW, END = ns(10), ns(11), ns(12)


def _stamp(t: int) -> str:
    return datetime.fromtimestamp(t // S, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def events() -> list[tuple[int, str, str, str]]:
    """(time, level, service, message). Per hour (baseline 10-11 h, window 11-12 h):
    A request..completed  20 / 20  api INFO    (unchanged)
    B query failed        2 / 30   db ERROR    (up 15x)
    C cache miss          20 / 0   api WARN    (gone)
    D disk full           0 / 3    db ERROR    (new; its second record carries a trace id)
    E user logged out     6 / 4    api INFO    (too few to tell)"""
    out = []
    for hour, start in ((10, BASE), (11, WINDOW)):
        base = hour == 10
        out += [(start + i * 180 * S, "INFO", "api", f"request /items/{i} completed in "
                 f"{10 + i % 3} ms") for i in range(20)]
        out += [(start + (i * 110 + 10) * S, "ERROR", "db",
                 f"query failed: timeout after {100 * (1 + i % 3)} ms") for i in range(2 if base else 30)]
        out += [(start + (i * 170 + 20) * S, "WARN", "api", f"cache miss for key {i}")
                for i in range(20 if base else 0)]
        out += [(start + (i * 600 + 30) * S, "ERROR", "db",
                 (f"trace={TRACE} " if i == 1 else "") + f"disk full on volume {i}")
                for i in range(0 if base else 3)]
        out += [(start + (i * 500 + 40) * S, "INFO", "api", f"user {100 + i} logged out")
                for i in range(6 if base else 4)]
    return sorted(out)


def log_text() -> str:
    return "".join(f"{_stamp(t)} {lvl} {svc} {msg}\n" for t, lvl, svc, msg in events())


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("logs") / "t.duckdb"
    log_assign.forget(path)
    with Store(path, settings=pinned_settings(path)) as store:
        res = ingest_bytes(store, log_text().encode(), source="app.log", fmt=Format.LOG_TEXT,
                           mapping={"pattern": PATTERN})
        assert res.report is not None and res.report.total_stored == len(events())
    yield path


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store(db, settings=pinned_settings(db), read_only=True) as s:
        yield s


# Ids follow first appearance: A 10:00:00, B 10:00:10, C 10:00:20, E 10:00:40, D 11:00:30.
A, B, C, E, D = 1, 2, 3, 4, 5


def test_templates_by_count_with_error_share_first_last_and_services(store: Store) -> None:
    result = la.template_counts(store)
    got = [(t.template_id, t.template, t.records, t.errors, t.services) for t in result.templates]
    assert got == [(A, "request <*> completed in <*> ms", 40, 0, ("api",)),
                   (B, "query failed: timeout after <*> ms", 32, 32, ("db",)),
                   (C, "cache miss for key <*>", 20, 0, ("api",)),
                   (E, "user <*> logged out", 10, 0, ("api",)),
                   (D, "disk full on volume <*>", 3, 3, ("db",))]
    a = result.templates[0]
    assert (a.first_ns, a.last_ns) == (ns(10), ns(11, 57))
    assert (result.records, result.assigned) == (105, 105)
    assert result.templates[1].error_share == 1.0
    row = result.to_rows().rows[0]
    assert row["share"] == pytest.approx(40 / 105) and row["first_seen"] == "2025-12-31T10:00:00Z"

    window = la.template_counts(store, WINDOW, END, ("db",), top=1)
    assert [(t.template_id, t.records, t.errors) for t in window.templates] == [(B, 30, 30)]
    assert (window.records, window.assigned) == (33, 33)


def _binom_two_sided(x: int, n: int) -> float:
    """Exact two-sided p for Binomial(n, 1/2): outcomes no likelier than x, by hand."""
    px = comb(n, x)
    return sum(comb(n, k) for k in range(n + 1) if comb(n, k) <= px) / 2 ** n


def test_new_templates_and_rate_changes_against_the_baseline(store: Store) -> None:
    trend = la.trend(store, WINDOW, END)  # baseline: the hour before
    assert (trend.baseline.since, trend.baseline.until) == (BASE, WINDOW)
    assert [(c.template_id, c.window_records, c.window_errors) for c in trend.new] == [(D, 3, 3)]
    assert trend.new[0].first_ns == ns(11, 0, 30)
    p_b, p_c, p_e = _binom_two_sided(30, 32), _binom_two_sided(0, 20), _binom_two_sided(4, 10)
    assert p_e == pytest.approx(1 - 252 / 1024)
    # Benjamini–Hochberg over the 4 tested (A p=1, E, C, B): q_B = 4 p_B, q_C = 4/2 p_C.
    got = [(c.template_id, c.window_records, c.baseline_records, c.rate_ratio) for c in trend.changed]
    assert got == [(B, 30, 2, 15.0), (C, 0, 20, 0.0)]
    assert trend.changed[0].p_value == pytest.approx(p_b)
    assert trend.changed[0].q_value == pytest.approx(4 * p_b)
    assert trend.changed[1].q_value == pytest.approx(2 * p_c)
    # A 20x fold keeps only the template that vanished; a higher minimum count skips C.
    assert [c.template_id for c in la.trend(store, WINDOW, END, min_fold=20).changed] == [C]
    assert [c.template_id for c in la.trend(store, WINDOW, END, min_count=25).changed] == [B]


def test_baseline_spellings(store: Store) -> None:
    t = la.trend(store, WINDOW, None, baseline_length=30 * 60 * S)
    assert (t.window.until, t.baseline.since, t.baseline.until) == (ns(11, 57) + 1, ns(10, 30),
                                                                    WINDOW)
    with pytest.raises(ValueError, match="window start"):
        la.trend(store, None, END)
    with pytest.raises(ValueError, match="baseline window is empty"):
        la.trend(store, WINDOW, END, baseline_since=WINDOW, baseline_until=BASE)


def test_top_parameter_values_per_position(store: Store) -> None:
    values = Counter(msg.rsplit(" ", 2)[1] for _t, _l, _s, msg in events()
                     if msg.startswith("query failed"))
    assert values == {"100": 11, "200": 11, "300": 10}  # what the generator wrote
    p = la.template_params(store, B, top=2)
    assert (p.slots, p.records, p.other_shape) == (1, 32, 0)
    assert [(v.position, v.value, v.records, v.distinct) for v in p.values] == [
        (1, "100", 11, 3), (1, "200", 11, 3)]
    a = la.template_params(store, A, since=WINDOW, top=1)
    assert [(v.position, v.value, v.records, v.distinct) for v in a.values] == [
        (1, "/items/0", 1, 20), (2, "10", 7, 3)]
    with pytest.raises(ValueError, match="no log template 99"):
        la.template_params(store, 99)


def test_search_filters_newest_first(store: Store) -> None:
    found = la.search_logs(store, "TIMEOUT", services=("db",), limit=3)
    assert [r.timestamp_ns for r in found.records] == [WINDOW + (i * 110 + 10) * S
                                                        for i in (29, 28, 27)]
    assert {r.template_id for r in found.records} == {B}
    assert found.records[0].params == ("100" if 29 % 3 == 0 else ("200" if 29 % 3 == 1 else "300"),)
    by_template = la.search_logs(store, template_id=D)
    assert [r.body for r in by_template.records] == [f"disk full on volume {i}" for i in (2, 1, 0)]
    assert len(la.search_logs(store, min_severity=17, limit=1000).records) == 35
    assert len(la.search_logs(store, min_severity=la.severity_number("warn"),
                              since=WINDOW, limit=1000).records) == 33
    traced = la.search_logs(store, trace_id=TRACE.upper())
    assert [(r.body, r.trace_id, r.template_id) for r in traced.records] == [
        ("disk full on volume 1", TRACE, D)]
    with pytest.raises(ValueError, match="unknown severity"):
        la.severity_number("loud")


def _run(db: Path, *args: str) -> str:
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})
    res = runner.invoke(main, ["--db", str(db), "logs", *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_cli_formats_and_golden(db: Path) -> None:
    out = _run(db, "templates", "--format", "json")
    if UPDATE:
        GOLDEN.write_text(out)
    assert out == GOLDEN.read_text(), "regenerate with TELLTALE_UPDATE_GOLDEN=1 and review the diff"
    parsed = json.loads(out)
    assert [r["records"] for r in parsed["rows"]] == [40, 32, 20, 10, 3]

    rows = list(csv.DictReader(io.StringIO(_run(db, "templates", "--format", "csv",
                                                "--service", "db"))))
    assert [(r["id"], r["records"], r["errors"]) for r in rows] == [("2", "32", "32"), ("5", "3", "3")]
    table = _run(db, "templates", "--top", "1")
    assert "request <*> completed in <*> ms" in table and "cache miss" not in table

    window = ["--since", "2025-12-31T11:00:00Z", "--until", "2025-12-31T12:00:00Z"]
    new = json.loads(_run(db, "new", *window, "--format", "json"))
    assert [r["id"] for r in new["rows"]] == [D]
    changed = json.loads(_run(db, "changed", *window, "--baseline-last", "1h", "--format", "json"))
    assert [(r["id"], r["rate_ratio"]) for r in changed["rows"]] == [(B, 15.0), (C, 0.0)]
    assert "disk full on volume <*>" in _run(db, "new", *window)

    params = json.loads(_run(db, "params", str(B), "--format", "json"))
    assert [(r["value"], r["records"]) for r in params["rows"]] == [("100", 11), ("200", 11),
                                                                     ("300", 10)]
    search = list(csv.DictReader(io.StringIO(_run(db, "search", "disk", "--severity", "error",
                                                  "--format", "csv"))))
    assert [r["body"] for r in search] == [f"disk full on volume {i}" for i in (2, 1, 0)]
    assert "newest first" in _run(db, "search", "--template", str(A), "--limit", "2")


def test_cli_errors_are_one_line(db: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})
    for args in (["params", "99"], ["new"], ["search", "--severity", "loud"],
                 ["changed", "--last", "1h", "--baseline-last", "1h", "--baseline-since", "2h"]):
        res = runner.invoke(main, ["--db", str(db), "logs", *args])
        assert res.exit_code == 1 and "Traceback" not in res.output, (args, res.output)
        assert res.output.startswith("Error: "), res.output


def test_cli_reindex(tmp_path: Path) -> None:
    path = tmp_path / "r.duckdb"
    log_assign.forget(path)
    with Store(path, settings=pinned_settings(path)) as s:
        ingest_bytes(s, log_text().encode(), source="app.log", fmt=Format.LOG_TEXT,
                     mapping={"pattern": PATTERN})
        s.con.execute("DELETE FROM telltale_log_template_of")
        s.con.execute("DELETE FROM telltale_log_templates")
    log_assign.forget(path)
    before = _run(path, "templates")
    assert "105 of 105 log records have no template yet" in before
    done = json.loads(_run(path, "reindex", "--format", "json"))
    assert done["rows"] == [{"records": 105, "batches": 1, "templates_before": 0,
                             "templates_after": 5}]
    assert json.loads(_run(path, "templates", "--format", "json"))["rows"][0]["records"] == 40


def test_a_store_older_than_templates_says_what_to_run(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with Store(path, settings=pinned_settings(path)) as s:
        s.con.execute("DROP TABLE telltale_log_template_of")  # as schema 1 had it
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})
    res = runner.invoke(main, ["--db", str(path), "logs", "templates"])
    assert res.exit_code == 1 and "run `telltale logs reindex`" in res.output, res.output
