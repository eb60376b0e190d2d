"""Extraction rules: a plain application log with durations yields spans (profile, heatmap)
and gauge points; re-running stores nothing twice; bad rules fail with one line naming them.

Expected figures are computed here from the fixture's text with a separate parser (plain `re`
and numpy's linear percentiles, the same definition as SQL's quantile_cont)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import pinned_settings
from telltale.analyses.heatmap import heatmap
from telltale.analyses.log_extract import extract
from telltale.analyses.log_extract_spec import RuleError, load_rules, parse_rules, template_regex
from telltale.analyses.profile import profile
from telltale.analyses.scope import Scope
from telltale.ingest import ingest_paths
from telltale.model import Format
from telltale.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
LOG = FIXTURES / "app_shop.log"
RULES = FIXTURES / "app_shop_rules.toml"
_LINE = re.compile(r"^(\S+ \S+) (\w+)\s+\[(\w+)\] \S+ - handler (\S+) (\S+) completed in (\d+) ms")
_QUEUE = re.compile(r"queue (\w+) depth=(\d+)$")


def _expected() -> tuple[dict[tuple[str, str], list[int]], dict[tuple[str, str], int], list[int]]:
    durations: dict[tuple[str, str], list[int]] = defaultdict(list)
    errors: dict[tuple[str, str], int] = defaultdict(int)
    depths = []
    for line in LOG.read_text().splitlines():
        m = _LINE.match(line)
        if m:
            key = (m.group(3), f"{m.group(4)} {m.group(5)}")
            durations[key].append(int(m.group(6)))
            errors[key] += m.group(2) == "ERROR"
        q = _QUEUE.search(line)
        if q:
            depths.append(int(q.group(2)))
    return durations, errors, depths


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "t.duckdb", settings=pinned_settings(tmp_path / "t.duckdb"))
    [result] = ingest_paths(s, [str(LOG)], fmt=Format.LOG_TEXT)
    assert result.error is None
    return s


def test_plain_log_yields_latency_profile_and_heatmap(store: Store) -> None:
    durations, errors, _ = _expected()
    assert len(durations) == 4 and sum(map(len, durations.values())) > 100
    outcome = extract(store, load_rules(RULES), Scope()).outcomes
    spans = {o.rule: o for o in outcome}["handler latency"]
    assert spans.stored == spans.matched == sum(map(len, durations.values()))
    got = {(r.service, r.operation): r for r in profile(store, Scope()).rows}
    assert set(got) == set(durations)
    for key, values in durations.items():
        p50, p95 = np.percentile(values, [50, 95])
        row = got[key]
        assert row.count == len(values)
        assert row.errors == errors[key]
        assert row.p50_ms == pytest.approx(p50)
        assert row.p95_ms == pytest.approx(p95)
        assert row.max_ms == pytest.approx(max(values))
    assert sum(errors.values()) > 0  # the fixture's ERROR lines became error spans
    heat = heatmap(store, Scope())
    assert {(g.service, g.operation): g.total for g in heat.groups} == {
        k: len(v) for k, v in durations.items()}


def test_span_ends_at_log_time_and_keeps_other_groups(store: Store) -> None:
    extract(store, load_rules(RULES), Scope())
    log_ns, body = store.query("SELECT Timestamp, Body FROM otel_logs WHERE Body LIKE "
                               "'%POST /api/checkout completed in%' ORDER BY Timestamp LIMIT 1")[0]
    ms = int(re.search(r"completed in (\d+) ms", body).group(1))  # type: ignore[union-attr]
    start, duration, kind, attrs, parent = store.query(
        "SELECT Timestamp, Duration, SpanKind, SpanAttributes, ParentSpanId FROM otel_traces "
        "WHERE SpanName = 'POST /api/checkout' ORDER BY Timestamp LIMIT 1")[0]
    assert duration == ms * 1_000_000 and start + duration == log_ns
    assert kind == "Internal" and parent == ""
    assert attrs["telltale.derived_from"] == "handler latency"
    assert attrs["logger"] == "app.handlers" and attrs["status"] in ("200", "500")
    assert "telltale.log.trace_id" not in attrs  # the plain log carries none


def test_rerun_is_idempotent_and_batches_are_reported(store: Store) -> None:
    rules = load_rules(RULES)
    first = {o.rule: o for o in extract(store, rules, Scope()).outcomes}
    n_spans, n_points = store.query("SELECT (SELECT count(*) FROM otel_traces), "
                                    "(SELECT count(*) FROM otel_metrics_gauge)")[0]
    assert n_spans == first["handler latency"].stored > 0
    assert n_points == first["queue depth"].stored > 0
    second = {o.rule: o for o in extract(store, rules, Scope()).outcomes}
    assert all(o.stored == 0 and o.present == o.matched for o in second.values())
    assert store.query("SELECT (SELECT count(*) FROM otel_traces), "
                       "(SELECT count(*) FROM otel_metrics_gauge)")[0] == (n_spans, n_points)
    batches = store.query("SELECT Source, Format, Stored FROM telltale_ingest_batches "
                          "WHERE Source LIKE 'extract:%' ORDER BY Source")
    assert batches == [("extract:handler latency", "extract", n_spans),
                       ("extract:queue depth", "extract", n_points)]


def test_dry_run_writes_nothing(store: Store) -> None:
    result = extract(store, load_rules(RULES), Scope(), dry_run=True)
    assert result.dry_run and all(o.stored > 0 and o.batch_id is None for o in result.outcomes)
    assert store.query("SELECT count(*) FROM otel_traces")[0][0] == 0


def test_metric_points(store: Store) -> None:
    _, _, depths = _expected()
    extract(store, load_rules(RULES), Scope())
    rows = store.query("SELECT ServiceName, MetricName, Attributes['queue'], Value "
                       "FROM otel_metrics_gauge ORDER BY TimeUnix")
    assert [r[3] for r in rows] == depths
    assert {r[:2] for r in rows} == {("worker", "queue.depth")}
    assert {r[2] for r in rows} == {"orders", "emails"}


def test_window_limits_what_is_read(store: Store) -> None:
    durations, _, _ = _expected()
    first, last = store.query("SELECT min(Timestamp), max(Timestamp) FROM otel_logs")[0]
    mid = (first + last) // 2
    early = extract(store, load_rules(RULES), Scope(None, mid)).outcomes[0]
    n_early = store.query("SELECT count(*) FROM otel_logs WHERE Timestamp < ? AND "
                          "Body LIKE '%completed in%'", [mid])[0][0]
    assert early.stored == n_early < sum(map(len, durations.values()))


def test_regex_rule_and_unusable_values(store: Store) -> None:
    rules = parse_rules({"rule": [{
        "name": "status as duration",  # status=200 parses; a non-number would be unusable
        "regex": r"handler (\S+) (?P<route>\S+) completed in (?P<ms>\d+) (?P<unit>\w+)",
        "span": {"name": "{route}", "duration": "ms", "unit": "us", "service": "api"}}]})
    [o] = extract(store, rules, Scope()).outcomes
    assert o.unusable == 0 and o.stored == o.matched > 0
    assert store.query("SELECT DISTINCT ServiceName FROM otel_traces") == [("api",)]
    rules = parse_rules({"rule": [{"name": "words", "regex": r"depth=(?P<d>\w+)|(?P<x>pool)",
                                   "metric": {"name": "m", "value": "x"}}]})
    [o] = extract(store, rules, Scope()).outcomes
    assert o.matched > 0 and o.unusable == o.matched and o.stored == 0


def test_template_escapes_literal_text() -> None:
    regex, groups = template_regex("GET /a.b?(x) [{id}] took {ms} ms", "ms")
    assert groups == ("id", "ms")
    m = re.search(regex, "GET  /a.b?(x) [7f] took 1.5 ms")
    assert m and m.group("id") == "7f" and m.group("ms") == "1.5"
    assert not re.search(regex, "GET /aXb?(x) [7f] took 1.5 ms")  # '.' is literal
    assert re.search(template_regex("{{literal}} {v}")[0], "{literal} 3")


@pytest.mark.parametrize(("rule", "message"), [
    ({"name": "r", "match": "took {ms ms", "span": {"name": "x", "duration": "ms"}},
     "rule 'r': unbalanced brace"),
    ({"name": "r", "match": "took {ms} ms", "span": {"name": "{op}", "duration": "ms"}},
     "rule 'r': span.name uses {op}"),
    ({"name": "r", "match": "took {ms} ms", "span": {"name": "x", "duration": "t"}},
     "rule 'r': span.duration = 't' is not a group"),
    ({"name": "r", "regex": "took (?P<ms>[0-9]+", "span": {"name": "x", "duration": "ms"}},
     "rule 'r': missing ), unterminated subpattern"),
    ({"name": "r", "match": "took {ms:float} ms", "span": {"name": "x", "duration": "ms"}},
     "rule 'r': placeholder {ms:float}: kind must be one of"),
    ({"name": "r", "match": "took {ms} ms"}, "rule 'r': give exactly one of span"),
    ({"name": "r", "match": "{ms}", "span": {"name": "x", "duration": "ms", "unit": "h"}},
     "rule 'r': span.unit must be one of"),
    ({"match": "{ms}", "span": {"name": "x", "duration": "ms"}}, "rule #1: needs a name"),
])
def test_bad_rules_fail_naming_the_rule(rule: dict[str, object], message: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_rules({"rule": [rule]})
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_regex_the_engine_refuses(store: Store) -> None:
    # Python accepts a lookbehind; RE2 (DuckDB) does not: refused before anything is read.
    rules = parse_rules({"rule": [{"name": "lookbehind", "regex": r"(?<=in )(?P<ms>\d+) ms",
                                   "span": {"name": "x", "duration": "ms"}}]})
    with pytest.raises(RuleError, match=r"^rule 'lookbehind': the engine refuses the regex"):
        extract(store, rules, Scope())


def test_cli_extract_and_bad_file(tmp_path: Path) -> None:
    from telltale.cli import main
    from telltale.commands import log_rules
    logs = main.commands.get("logs")
    if not (hasattr(logs, "commands") and "extract" in logs.commands):
        log_rules.register(main)
    db = str(tmp_path / "c.duckdb")
    runner = CliRunner()
    assert runner.invoke(main, ["--db", db, "ingest", str(LOG)]).exit_code == 0
    out = runner.invoke(main, ["--db", db, "logs", "extract", str(RULES), "--format", "json"])
    assert out.exit_code == 0, out.output
    assert '"stored": 16' in out.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\nmatch = "no placeholders"\nspan = {name="a", '
                   'duration="ms"}\n')
    out = runner.invoke(main, ["--db", db, "logs", "extract", str(bad)])
    assert out.exit_code == 1
    assert "rule 'x': match has no {placeholders}" in out.output
    assert "Traceback" not in out.output


def test_ingest_with_extract_derives_spans_once_and_checks_rules_first(tmp_path: Path) -> None:
    from telltale.cli import main

    db = tmp_path / "x.duckdb"
    log, rules = str(FIXTURES / "app_shop.log"), str(FIXTURES / "app_shop_rules.toml")
    runner = CliRunner()
    first = runner.invoke(main, ["--db", str(db), "ingest", log, "--extract", rules])
    assert first.exit_code == 0, first.output
    with Store(db, read_only=True) as store:
        derived = store.query("SELECT count(*) FROM otel_traces "
                              "WHERE SpanAttributes['telltale.derived_from'] = 'handler latency'")
    assert derived[0][0] == len(re.findall(r"completed in \d+ ms", (FIXTURES / "app_shop.log")
                                           .read_text()))
    again = runner.invoke(main, ["--db", str(db), "ingest", log, "--extract", rules])
    assert again.exit_code == 0, again.output
    with Store(db, read_only=True) as store:
        assert store.query("SELECT count(*) FROM otel_traces") == derived
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\nmatch = "a {b}"\n')
    other = tmp_path / "other.duckdb"
    refused = runner.invoke(main, ["--db", str(other), "ingest", log, "--extract", str(bad)])
    assert refused.exit_code == 1 and "rule 'x'" in refused.output
    assert not other.exists()  # nothing ingested when the rules are wrong
