"""The `telltale` command, through click's test runner: options, output formats, user errors."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from conftest import T0, S, jsonl, sid, span, tid, trace_request
from telltale.cli import main
from telltale.settings import ENV_DB
from telltale.store import Store


@pytest.fixture
def runner() -> CliRunner:
    # Wide enough that rich does not wrap file names; no colour codes.
    return CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl([trace_request([
        span(tid(1), sid(1), "root", start=T0, end=T0 + 2 * S),
        span(tid(1), sid(2), "child", parent=sid(1), start=T0 + S, end=T0 + 2 * S),
    ], service="api")]))
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(
        jsonl([trace_request([span(tid(2), sid(1), "ok", start=T0 + 3 * S),
                              span(tid(2), sid(2), "", start=T0 + 4 * S),
                              span(tid(2), sid(3), "late", start=0)], service="worker")])
        + b'{"resourceSpans": [\n'
        + b"\xff\xfe\n")
    return {"good": good, "mixed": mixed}


def _one_line_error(res: Result) -> str:
    assert res.exit_code != 0
    assert res.exception is None or isinstance(res.exception, SystemExit)
    text = res.stderr + res.stdout
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_ingest_prints_format_and_summary(runner: CliRunner, files: dict[str, Path],
                                          tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    res = runner.invoke(main, ["--db", str(db), "ingest", str(files["good"]),
                               str(files["mixed"])])
    assert res.exit_code == 0, res.output
    out = res.stdout
    for name in ("good", "mixed"):
        line = next(ln for ln in out.splitlines() if ln.startswith(str(files[name]) + ":"))
        assert "otlp-json (" in line  # the detected format, and why
    assert "missing_name" in out and "bad_timestamp" in out and "unparsable" in out
    assert "stored 3 records, quarantined 4" in out
    assert str(db) in out


def test_ingest_json_output(runner: CliRunner, files: dict[str, Path], tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    res = runner.invoke(main, ["--db", str(db), "ingest", "--output", "json",
                               str(files["good"]), str(files["mixed"])])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    by_source = {Path(d["source"]).name: d for d in doc}
    assert by_source["good.jsonl"]["read"] == 2
    assert by_source["good.jsonl"]["stored"] == {"traces": 2}
    assert by_source["good.jsonl"]["quarantined"] == {}
    mixed = by_source["mixed.jsonl"]
    assert mixed["format"] == "otlp-json"
    assert mixed["read"] == 5
    assert mixed["stored"] == {"traces": 1}
    assert mixed["quarantined"] == {"bad_encoding": 1, "bad_timestamp": 1, "missing_name": 1,
                                    "unparsable": 1}
    assert all(d["error"] is None and d["already_ingested"] is False for d in doc)
    # Again: nothing is stored twice, and the JSON says so.
    again = orjson.loads(runner.invoke(main, ["--db", str(db), "ingest", "--output", "json",
                                              str(files["good"])]).stdout)
    assert again[0]["already_ingested"] is True
    assert again[0]["read"] == 0


def test_env_var_names_the_store(runner: CliRunner, files: dict[str, Path],
                                 tmp_path: Path) -> None:
    env_db = tmp_path / "from-env.duckdb"
    res = runner.invoke(main, ["ingest", str(files["good"])], env={ENV_DB: str(env_db)})
    assert res.exit_code == 0, res.output
    with Store(env_db, read_only=True) as s:
        assert s.query("SELECT count(*) FROM otel_traces") == [(2,)]
    # --db wins over the environment.
    flag_db = tmp_path / "from-flag.duckdb"
    res = runner.invoke(main, ["--db", str(flag_db), "ingest", str(files["mixed"])],
                        env={ENV_DB: str(env_db)})
    assert res.exit_code == 0, res.output
    with Store(flag_db, read_only=True) as s:
        assert s.query("SELECT count(*) FROM otel_traces") == [(1,)]
    with Store(env_db, read_only=True) as s:
        assert s.query("SELECT count(*) FROM otel_traces") == [(2,)]
    # And quality reads the store the environment names.
    res = runner.invoke(main, ["quality", "--format", "json"], env={ENV_DB: str(env_db)})
    assert res.exit_code == 0, res.output
    assert orjson.loads(res.stdout)["total"]["stored"] == 2


def test_default_store_is_in_the_working_directory(runner: CliRunner, files: dict[str, Path],
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    res = runner.invoke(main, ["ingest", str(files["good"])])
    assert res.exit_code == 0, res.output
    assert (workdir / "telltale.duckdb").is_file()


def test_ingest_missing_path(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    res = runner.invoke(main, ["--db", str(tmp_path / "t.duckdb"), "ingest", str(missing)])
    line = _one_line_error(res)
    assert str(missing) in line


def test_ingest_glob_matching_nothing(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(main, ["--db", str(tmp_path / "t.duckdb"), "ingest",
                               str(tmp_path / "*.nothing")])
    assert "no files match" in _one_line_error(res)


def test_ingest_corrupt_gzip_is_reported_per_source(runner: CliRunner, files: dict[str, Path],
                                                    tmp_path: Path) -> None:
    bad = tmp_path / "broken.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip")
    db = tmp_path / "t.duckdb"
    res = runner.invoke(main, ["--db", str(db), "ingest", "--output", "json", str(bad),
                               str(files["good"])])
    assert res.exit_code == 1
    doc = {Path(d["source"]).name: d for d in orjson.loads(res.stdout)}
    assert "corrupt gzip" in doc["broken.jsonl.gz"]["error"]
    assert doc["good.jsonl"]["stored"] == {"traces": 2}  # the other source still went in


@pytest.fixture
def ingested(runner: CliRunner, files: dict[str, Path], tmp_path: Path) -> Path:
    db = tmp_path / "q.duckdb"
    res = runner.invoke(main, ["--db", str(db), "ingest", str(files["good"]),
                               str(files["mixed"])])
    assert res.exit_code == 0, res.output
    return db


def test_quality_json(runner: CliRunner, ingested: Path) -> None:
    res = runner.invoke(main, ["--db", str(ingested), "quality", "--format", "json",
                               "--by", "service"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    assert doc["by"] == "service"
    groups = {g["key"]: g["spans"] for g in doc["groups"]}
    assert groups["api"]["good"] == 2 and groups["api"]["score"] == 1.0
    assert groups["worker"]["stored"] == 1
    assert groups["worker"]["quarantined"] == {"bad_timestamp": 1, "missing_name": 1}
    assert doc["total"]["received"] == 7


def test_quality_csv(runner: CliRunner, ingested: Path) -> None:
    res = runner.invoke(main, ["--db", str(ingested), "quality", "--format", "csv",
                               "--bucket", "1m"])
    assert res.exit_code == 0, res.output
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    overall = {Path(r["source"]).name: r for r in table if r["bucket_start"] == "all"}
    assert overall["good.jsonl"]["score"] == "1.000"
    assert overall["mixed.jsonl"]["received"] == "5"
    assert overall["mixed.jsonl"]["stored"] == "1"
    assert {r["bucket_start"] for r in table} == {"all", "2025-01-01T00:00:00Z"}


def test_quality_table(runner: CliRunner, ingested: Path) -> None:
    res = runner.invoke(main, ["--db", str(ingested), "quality"])
    assert res.exit_code == 0, res.output
    assert "good.jsonl" in res.stdout and "mixed.jsonl" in res.stdout
    assert "Trace quality by source" in res.stdout


def test_quality_window_options(runner: CliRunner, ingested: Path) -> None:
    res = runner.invoke(main, ["--db", str(ingested), "quality", "--format", "json",
                               "--since", "2025-01-01T00:00:02Z", "--until", "2025-01-01T01:00:00Z"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    assert doc["since"] == "2025-01-01T00:00:02Z"
    assert doc["until"] == "2025-01-01T01:00:00Z"
    # Only trace 2 has a span from 00:00:02 on; trace 1 (00:00:00-00:00:02) is left out.
    assert doc["total"]["stored"] == 1


def test_quality_missing_store(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "none.duckdb"
    line = _one_line_error(runner.invoke(main, ["--db", str(missing), "quality"]))
    assert str(missing) in line
    assert not missing.exists()


@pytest.mark.parametrize("args", [["--since", "last tuesday"], ["--until", "2025-13-45"],
                                  ["--last", "ten minutes"], ["--since", "1h", "--last", "1h"],
                                  ["--bucket", "fortnight"]])
def test_quality_bad_window_option(args: list[str], runner: CliRunner, ingested: Path) -> None:
    line = _one_line_error(runner.invoke(main, ["--db", str(ingested), "quality", *args]))
    assert len(line) < 200


def test_bad_choice_is_a_usage_error(runner: CliRunner, ingested: Path) -> None:
    res = runner.invoke(main, ["--db", str(ingested), "quality", "--format", "yaml"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output


def test_ingest_with_a_mapping_preset_and_file(runner: CliRunner, tmp_path: Path) -> None:
    events = tmp_path / "agents.log"  # no telling extension: the mapping decides
    events.write_bytes(b'{"ts": 1767225600.5, "event": "spawn", "model": "m1", "caste": "scout",'
                       b' "task": "t1", "source": "rule", "outcome": "success",'
                       b' "duration_ms": 1500}\n')
    db = tmp_path / "m.duckdb"
    res = runner.invoke(main, ["--db", str(db), "ingest", str(events), "--format",
                               "events-jsonl", "--mapping", "agent-spawn"])
    assert res.exit_code == 0, res.output
    mapping = tmp_path / "map.json"
    mapping.write_bytes(orjson.dumps({"name": "{event}", "start": "ts", "time_unit": "s",
                                      "duration": "duration_ms", "duration_unit": "ms",
                                      "service_name": "custom", "merge_by": None}))
    other = tmp_path / "other.log"
    other.write_bytes(events.read_bytes().replace(b"t1", b"t2"))
    res = runner.invoke(main, ["--db", str(db), "ingest", str(other), "--format",
                               "events-jsonl", "--mapping", str(mapping)])
    assert res.exit_code == 0, res.output
    with Store(db, read_only=True) as store:
        rows = store.query("SELECT ServiceName, SpanName, Duration, SpanAttributes['agent.model']"
                           " FROM otel_traces ORDER BY ServiceName")
    assert rows[0][:3] == ("agents", "agent.spawn", 1_500_000_000)
    assert rows[0][3] == "m1"
    assert rows[1][:3] == ("custom", "spawn", 1_500_000_000)


def test_ingest_unknown_mapping_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(main, ["--db", str(tmp_path / "t.duckdb"), "ingest", str(tmp_path),
                               "--mapping", "no-such-preset"])
    assert res.exit_code != 0
    assert "no-such-preset" in res.output
    assert "Traceback" not in res.output


def test_empty_file_has_no_records(runner: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n  \n")
    db = tmp_path / "t.duckdb"
    res = runner.invoke(main, ["--db", str(db), "ingest", str(empty), "--output", "json"])
    assert res.exit_code == 0, res.output
    (row,) = orjson.loads(res.stdout)
    assert (row["read"], row["stored"], row["quarantined"]) == (0, {}, {})
    with Store(db, read_only=True) as store:
        assert store.query("SELECT count(*) FROM telltale_quarantine") == [(0,)]
