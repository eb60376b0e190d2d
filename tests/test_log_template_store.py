"""Templates assigned in the store's write path: every committed log record gets a template id
and parameters, ids survive later ingests, templates and records commit together, and
`reindex` gives templates to records stored without them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import pinned_settings
from telltale.analyses.log_analytics import template_params
from telltale.analyses.log_templates import TemplateMiner, load_miner, reindex, save_miner
from telltale.ingest import ingest_bytes
from telltale.model import Format
from telltale.store import Store, log_assign

PATTERN = r"(?P<time>\S+) (?P<level>\w+) (?P<service>\S+) (?P<message>.*)"

FIRST = """\
2026-01-01T10:00:00Z INFO api request /users/17 completed in 12 ms
2026-01-01T10:00:01Z INFO api request /users/18 completed in 15 ms
2026-01-01T10:00:02Z ERROR db query failed: timeout after 300 ms
2026-01-01T10:00:03Z INFO api session opened for user root
2026-01-01T10:00:04Z INFO api request /users/17 completed in 12 ms
"""
SECOND = """\
2026-01-01T10:01:00Z INFO api session opened for user alice
2026-01-01T10:01:01Z INFO worker job started
2026-01-01T10:01:02Z ERROR db query failed: timeout after 250 ms
"""


def ingest(store: Store, text: str, name: str) -> Any:
    result = ingest_bytes(store, text.encode(), source=name, fmt=Format.LOG_TEXT,
                          mapping={"pattern": PATTERN})
    assert result.report is not None and result.error is None
    return result.report


def assigned(store: Store) -> list[tuple[Any, ...]]:
    """(body, service, template id, params) of every stored record, in time order."""
    return store.query("""
        SELECT l.Body, l.ServiceName, o.TemplateId, o.Params
        FROM otel_logs l LEFT JOIN telltale_log_template_of o
          ON o.BatchId = l.BatchId AND o.Timestamp = l.Timestamp
          AND o.BodyKey = md5_number(l.Body)
        ORDER BY l.Timestamp, l.Body""")


def templates(store: Store) -> dict[int, tuple[str, int]]:
    return {int(i): (t, int(c)) for i, t, c in
            store.query("SELECT id, template, count FROM telltale_log_templates ORDER BY id")}


def assert_consistent(store: Store) -> None:
    """Template counters equal the records assigned to them; every record has one template."""
    per_template = dict(store.query(
        "SELECT TemplateId, count(*) FROM telltale_log_template_of GROUP BY 1"))
    assert {i: c for i, (_t, c) in templates(store).items() if c} == per_template
    logs = store.query("SELECT count(*) FROM otel_logs")[0][0]
    assert store.query("SELECT count(*) FROM telltale_log_template_of")[0][0] == logs


@pytest.fixture
def db(tmp_path: Path) -> Path:
    log_assign.forget(tmp_path / "t.duckdb")
    return tmp_path / "t.duckdb"


def test_each_committed_record_gets_a_template_and_its_parameters(db: Path) -> None:
    with Store(db, settings=pinned_settings(db)) as store:
        ingest(store, FIRST, "a.log")
        rows = assigned(store)
        assert_consistent(store)
        assert templates(store) == {
            1: ("request <*> completed in <*> ms", 3),
            2: ("query failed: timeout after <*> ms", 1),
            3: ("session opened for user root", 1)}
    assert rows == [
        ("request /users/17 completed in 12 ms", "api", 1, ["/users/17", "12"]),
        ("request /users/18 completed in 15 ms", "api", 1, ["/users/18", "15"]),
        ("query failed: timeout after 300 ms", "db", 2, ["300"]),
        ("session opened for user root", "api", 3, []),
        ("request /users/17 completed in 12 ms", "api", 1, ["/users/17", "12"]),
    ]


def test_ids_persist_and_are_not_renumbered_by_a_second_ingest(db: Path) -> None:
    with Store(db, settings=pinned_settings(db)) as store:
        ingest(store, FIRST, "a.log")
        first = assigned(store)
    log_assign.forget(db)  # as a new process would: the miner is loaded from the table
    with Store(db, settings=pinned_settings(db)) as store:
        ingest(store, SECOND, "b.log")
        assert ingest(store, FIRST, "a.log").already_ingested  # same content: nothing twice
        rows = assigned(store)
        assert_consistent(store)
        texts = {i: t for i, (t, _c) in templates(store).items()}
        params = template_params(store, 3)
    assert [r for r in rows if r[0] != "" and r in first] == first  # old records untouched
    new = {r[0]: r[2:] for r in rows if r not in first}
    assert new == {"session opened for user alice": (3, ["alice"]),  # refined, same id
                   "job started": (4, []),                           # a new event, a new id
                   "query failed: timeout after 250 ms": (2, ["250"])}
    assert texts[3] == "session opened for user <*>"
    # The record assigned before template 3 widened has no value for its new slot.
    assert (params.slots, params.records, params.other_shape) == (1, 1, 1)
    assert [(v.position, v.value, v.records) for v in params.values] == [(1, "alice", 1)]


def test_a_failed_commit_leaves_neither_records_nor_templates(db: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(db, settings=pinned_settings(db)) as store:
        ingest(store, FIRST, "a.log")
        before = (assigned(store), templates(store))

        def broken(*_a: Any) -> None:
            raise RuntimeError("disk gone")

        monkeypatch.setattr(log_assign, "_save", broken)  # fails after the records were staged
        with pytest.raises(RuntimeError, match="disk gone"):
            ingest_bytes(store, SECOND.encode(), source="b.log", fmt=Format.LOG_TEXT,
                         mapping={"pattern": PATTERN})
        monkeypatch.undo()
        assert (assigned(store), templates(store)) == before
        assert store.query("SELECT count(*) FROM telltale_ingest_batches")[0][0] == 1
        # The rolled-back templates are not reused from memory: the next commit numbers anew.
        ingest(store, "2026-01-01T10:02:00Z INFO worker disk almost full\n", "c.log")
        assert templates(store)[4] == ("disk almost full", 1)
        assert_consistent(store)


def test_templates_written_by_another_miner_are_picked_up(db: Path) -> None:
    """The cached miner is checked against the table, so another writer's ids never collide."""
    with Store(db, settings=pinned_settings(db)) as store:
        ingest(store, FIRST, "a.log")
        other = load_miner(store)
        other.add("backup finished in 3 s", 5)  # id 4, saved behind the cache's back
        save_miner(store, other)
        ingest(store, SECOND, "b.log")
        ids = templates(store)
    assert ids[4] == ("backup finished in <*> s", 1)
    assert ids[5] == ("job started", 1)


def test_reindex_assigns_records_stored_without_templates(db: Path) -> None:
    with Store(db, settings=pinned_settings(db)) as store:
        ingest(store, FIRST, "a.log")
        ingest(store, SECOND, "b.log")
        expected = assigned(store)
        # A store written before templates were assigned at ingest: records, no templates.
        store.con.execute("DELETE FROM telltale_log_template_of")
        store.con.execute("DELETE FROM telltale_log_templates")
        log_assign.forget(db)
        done = reindex(store, batches_per_step=1)
        assert (done.records, done.batches, done.templates_before, done.templates_after) == (
            8, 2, 0, 4)
        again = assigned(store)
        assert_consistent(store)
        assert reindex(store).records == 0  # nothing left without a template
    # One batch per step mines in the order ingest did: the very same assignment.
    assert again == expected


def test_reindex_all_realigns_parameters_and_keeps_ids(db: Path) -> None:
    with Store(db, settings=pinned_settings(db)) as store:
        ingest(store, FIRST, "a.log")
        ingest(store, SECOND, "b.log")
        ids = {r[0]: r[2] for r in assigned(store)}
        before = templates(store)
        done = reindex(store, all_records=True)
        after = assigned(store)
        assert_consistent(store)
        assert templates(store) == before
        params = template_params(store, 3)
    assert done.records == 8 and done.all_records
    assert {r[0]: r[2] for r in after} == ids
    assert (params.records, params.other_shape) == (2, 0)
    assert sorted((v.value, v.records) for v in params.values) == [("alice", 1), ("root", 1)]


def test_parameters_of_tokens_with_a_wildcard_inside() -> None:
    miner = TemplateMiner()
    line = "Failed password for root from 10.0.0.1 port 22 ssh2 [pid 4411]: rhost=10.0.0.1"
    tid = miner.add(line)
    assert miner.templates[tid].text == ("Failed password for root from <*> port <*> ssh<*>"
                                         " [pid <*>]: rhost=<*>")
    assert miner.parameters(tid, line) == ["10.0.0.1", "22", "2", "4411", "10.0.0.1"]
    multi = "ERROR boom at 12:00:01\n  at a.b(C.java:17)\n  at d.e(F.java:3)"
    tid = miner.add(multi)
    assert miner.templates[tid].text == "ERROR boom at <*> at a.b(C.java:<*>) at d.e(F.java:<*>)"
    assert miner.parameters(tid, multi) == ["12:00:01", "17", "3"]  # across the record's lines
