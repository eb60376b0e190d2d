"""Template miner: exact templates on hand-made logs, multi-token variables, levels kept apart,
parameters, and ids that stay put across a persisted second ingest."""

from __future__ import annotations

from pathlib import Path

import pytest

from telltale.analyses.log_templates import TemplateMiner, load_miner, mask, save_miner
from telltale.normalize import log_miner
from telltale.store import Store


def _texts(miner: TemplateMiner) -> dict[int, str]:
    return {tid: t.text for tid, t in miner.templates.items()}


def test_masking_keeps_keys_and_punctuation() -> None:
    assert mask("rhost=10.0.0.1 uid=0 [pid 42]: took 12ms") == ["rhost=<*>", "uid=<*>", "[pid",
                                                                 "<*>]:", "took", "<*>"]
    assert mask("GET https://x.io/a?b=1 /var/log/app.log 550e8400-e29b-41d4-a716-446655440000") \
        == ["GET", "<*>"]  # a run of variables is one multi-token wildcard
    assert mask("started Sun Dec 04 04:47:44 2005 ok") == ["started", "<*>", "ok"]
    assert mask("at 10:00:00 on FriDec 1 ok") == ["at", "<*>", "on", "FriDec", "<*>", "ok"]


def test_masking_is_the_same_on_non_ascii_lines() -> None:
    # ASCII lines take a faster regex; other lines keep Unicode digits and letters.
    assert mask("id 12é ok") == ["id", "<*>", "ok"]
    assert mask("id \u0661\u0662 ok") == ["id", "<*>", "ok"]  # Arabic-Indic digits
    assert mask("Mon Jan  2 03:04:05 ü") == ["<*>", "ü"]


def test_exact_templates_and_parameters() -> None:
    miner = TemplateMiner()
    a = miner.add("Connected to 10.0.0.1 port 22")
    b = miner.add("Connected to 10.0.0.2 port 2222")
    c = miner.add("login user alice ok")
    d = miner.add("login user bob ok")
    e = miner.add("Disk full")
    assert a == b and c == d and len({a, c, e}) == 3
    assert _texts(miner) == {a: "Connected to <*> port <*>", c: "login user <*> ok", e: "Disk full"}
    assert miner.parameters(a, "Connected to 10.0.0.3 port 80") == ["10.0.0.3", "80"]
    assert miner.templates[a].count == 2


def test_multi_token_variables_and_token_count_split() -> None:
    miner = TemplateMiner()
    # Variable runs of different lengths collapse into one wildcard: one template.
    ids = {miner.add("Deleting blocks 1 2 3 from node"), miner.add("Deleting blocks 7 from node"),
           miner.add("Deleting blocks 4 5 6 8 9 from node")}
    assert len(ids) == 1
    assert miner.templates[ids.pop()].text == "Deleting blocks <*> from node"
    # A widened word slot takes a longer line whose extra tokens are variables ...
    host = miner.add("Connection from host-a closed")
    assert miner.add("Connection from host-b closed") == host
    assert miner.add("Connection from 10.0.0.1:22 [10.0.0.2] closed") == host
    # ... but never swallows a constant word.
    assert miner.add("Connection from 10.0.0.1 port 22 closed") != host


def test_levels_are_never_wildcarded() -> None:
    miner = TemplateMiner()
    words = {miner.add(f"worker pool {w} cache refresh finished for all shards now")
             for w in ("alpha", "beta")}
    assert len(words) == 1  # an ordinary word differing in the same slot merges ...
    levels = {miner.add(f"worker pool {lvl} cache refresh finished for all shards now")
              for lvl in ("ERROR", "INFO", "[WARN]")}
    assert len(levels) == 3 and not levels & words  # ... a level never does
    assert all("<*>" not in miner.templates[i].text for i in levels)


def test_ids_are_stable_across_a_persisted_second_ingest(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    first = ["session opened for user root", "session opened for user root",
             "cache warm in 12 ms", "ERROR worker stopped"]
    with Store(db) as store:
        miner = load_miner(store)
        ids1 = [miner.add(m, ts_ns=100 + i) for i, m in enumerate(first)]
        save_miner(store, miner)
    before = {r["id"]: r for r in miner.rows()}

    second = ["job started", "session opened for user alice", "cache warm in 3 ms",
              "ERROR worker stopped"]
    with Store(db) as store:
        miner2 = load_miner(store)
        assert _texts(miner2) == _texts(miner)  # loaded from the table, not re-mined
        ids2 = [miner2.add(m, ts_ns=200 + i) for i, m in enumerate(second)]
        save_miner(store, miner2)
        rows = store.query("SELECT id, template, first_seen, last_seen, count "
                           "FROM telltale_log_templates ORDER BY id")
    assert ids2[1:] == [ids1[0], ids1[2], ids1[3]]  # the same events keep their ids
    assert ids2[0] not in before  # a new event gets a new id
    by_id = {r[0]: r for r in rows}
    assert set(before) < set(by_id)
    assert by_id[ids1[0]][1] == "session opened for user <*>"  # refined (widened), same id
    assert by_id[ids1[0]][2:] == (100, 201, 3)
    assert by_id[ids1[3]][1] == "ERROR worker stopped"


_LINES = [f"user {u} opened session {i} from 10.0.0.{i % 7}" for i in range(40) for u in "ab"] + [
    "Disk full", "Disk full", "cache warm in 3 ms", "cache warm in   4 ms", "cache warm in 5  ms",
    "ERROR worker stopped", "ERROR worker stopped now", "x" * 600, "x" * 600]


def test_caches_never_change_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The raw-line and masked caches only repeat what matching answered, also when they are
    emptied for being full, and `add` and `add_all` agree."""
    one_by_one = TemplateMiner()
    ids = [one_by_one.add(m) for m in _LINES]
    assert TemplateMiner().add_all(_LINES) == ids
    monkeypatch.setattr(log_miner, "CACHE_ENTRIES", 3)
    tiny = TemplateMiner()
    assert tiny.add_all(_LINES) == ids
    assert max(len(tiny._lines), len(tiny._texts), len(tiny._cache)) <= 3
    assert {t.id: (t.text, t.count) for t in tiny.templates.values()} == \
        {t.id: (t.text, t.count) for t in one_by_one.templates.values()}
    assert "x" * 600 not in tiny._lines and "x" * 600 not in tiny._texts  # long lines are not kept


def test_add_all_counts_and_marks_dirty() -> None:
    miner = TemplateMiner()
    ids = miner.add_all(["Disk full", "Disk full", "job 1 done"])
    assert ids[0] == ids[1] != ids[2]
    assert miner.templates[ids[0]].count == 2 and miner.templates[ids[2]].count == 1
    assert miner.take_dirty() == sorted(set(ids))
