"""The span index: the dependency graph read from it equals the graph read from the raw spans, on
random stores committed through the real write path (children before parents, duplicates,
orphans, links, quarantined spans, group commits); old stores are indexed by migration 3 and,
opened read-only, answered from the raw spans."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pytest

from conftest import MS, T0, S, jsonl, pinned_settings, span, tid, trace_request
from telltale.analyses.deps import dependencies
from telltale.analyses.scope import Scope
from telltale.ingest import ingest_bytes
from telltale.model import Signal
from telltale.serve.decode import JSON, Part, decode_group
from telltale.store import Store, schema, span_index

SERVICES = ["a", "b", "c", "d"]
_PEER_KEYS = ["peer.service", "db.system", "db.namespace", "messaging.system",
              "messaging.destination.name", "server.address"]


def _attrs(rng: random.Random) -> dict[str, str]:
    return {k: rng.choice(["", "x", "y"]) for k in rng.sample(_PEER_KEYS, rng.randint(0, 3))}


def _random_spans(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """(service, OTLP JSON span) for some random traces; a few spans are invalid (quarantined)
    and a few are repeated (stored twice, in other batches)."""
    out: list[tuple[str, dict[str, Any]]] = []
    stored: list[tuple[str, str]] = []
    for t in range(rng.randint(20, 40)):
        trace = tid(1000 + t)
        ids: list[str] = []
        for _ in range(rng.randint(1, 8)):
            span_id = f"{rng.getrandbits(64) | 1:016x}"
            roll = rng.random()
            parent = (rng.choice(ids) if ids and roll < 0.8
                      else f"{rng.getrandbits(64) | 1:016x}" if roll < 0.9 else "")  # an orphan
            start = T0 + t * S + rng.randint(0, 500) * MS
            item = span(trace, span_id, rng.choice(["GET", "POST /x", "op"]), parent=parent,
                        kind=rng.choice([None, 0, 1, 2, 2, 3, 3, 4, 5, 5]),
                        status=rng.choice([None, 0, 2]), attributes=_attrs(rng), start=start,
                        end=start + rng.randint(1, 300) * MS)
            if rng.random() < 0.15:  # to a stored span, to the own parent, or to nothing
                targets = [*stored[-20:], (trace, parent or span_id), (tid(9999), span_id)]
                item["links"] = [{"traceId": tr, "spanId": sp}
                                 for tr, sp in rng.sample(targets, rng.randint(1, 2))]
            if rng.random() < 0.04:
                item["spanId"] = "not-hex"  # quarantined
            ids.append(span_id)
            stored.append((trace, span_id))
            out.append((rng.choice(SERVICES), item))
            if rng.random() < 0.05:
                out.append(out[-1])  # a duplicate
    return out


def _body(spans: list[tuple[str, dict[str, Any]]]) -> bytes:
    """One OTLP request (a JSON lines file of one line, or an HTTP body)."""
    resources = [trace_request([s for svc, s in spans if svc == name], service=name)
                 for name in SERVICES if any(svc == name for svc, _ in spans)]
    return jsonl([{"resourceSpans": [r["resourceSpans"][0] for r in resources]}])


def _commit_randomly(store: Store, rng: random.Random, spans: list[tuple[str, dict[str, Any]]]
                     ) -> None:
    """In shuffled batches (so children often land before their parents); some batches are
    committed alone, others grouped as the receiver does, with an earlier batch repeated."""
    rng.shuffle(spans)
    cuts = sorted(rng.sample(range(1, len(spans)), 6))
    bodies = [_body(spans[a:b]) for a, b in zip([0, *cuts], [*cuts, len(spans)], strict=True)]
    for i in range(0, len(bodies), 2):
        group = bodies[i:i + 2]
        if rng.random() < 0.5:
            for n, data in enumerate(group):
                ingest_bytes(store, data, source=f"part{i + n}.jsonl")
        else:
            parts = [Part(Signal.TRACES, data, JSON, "otlp-http") for data in [*group, bodies[0]]]
            decoded, sources, _ = decode_group(parts)
            # (bodies[0] again: skipped in its own group, stored twice if it came as a file)
            assert store.commit_parts(decoded, sources)[0].total_stored > 0


_COVERAGE = """
SELECT (SELECT count(*) > 0 FROM telltale_quarantine),
    (SELECT count(*) > 0 FROM (SELECT 1 FROM otel_traces GROUP BY TraceId, SpanId HAVING count(*) > 1)),
    (SELECT count(*) > 0 FROM otel_traces c WHERE ParentSpanId <> '' AND NOT EXISTS (
        SELECT 1 FROM otel_traces p WHERE p.TraceId = c.TraceId AND p.SpanId = c.ParentSpanId)),
    (SELECT count(*) > 0 FROM otel_traces c JOIN otel_traces p
        ON p.TraceId = c.TraceId AND p.SpanId = c.ParentSpanId AND c.BatchId < p.BatchId),
    (SELECT count(*) > 0 FROM otel_traces WHERE len(Links) > 0)
"""


def _graph(store: Store, scope: Scope, level: str, indexed: bool) -> tuple[Any, ...]:
    g = dependencies(store, scope, level=level, use_index=indexed)
    return g.edges, g.unpaired


@pytest.mark.parametrize("seed", range(6))
def test_index_graph_equals_raw_graph(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    db = tmp_path / "r.duckdb"
    with Store(db, settings=pinned_settings(db)) as store:
        _commit_randomly(store, rng, _random_spans(rng))
        assert span_index.complete(store.con)
        # what the comparison must cover, found in every seed's store
        assert store.query(_COVERAGE)[0] == (True, True, True, True, True)
        scopes = [Scope(), Scope(since=T0 + 5 * S, until=T0 + 15 * S), Scope(services=["a", "c"]),
                  Scope(operations=["GET"]), Scope(since=T0 + 10 * S, services=["b"])]
        edges = 0
        for scope in scopes:
            for level in ("service", "operation"):
                expected = _graph(store, scope, level, False)
                assert _graph(store, scope, level, True) == expected, (scope, level)
                edges += len(expected[0])
        assert edges > 20  # the comparison is not between empty graphs


def _requests() -> bytes:
    return jsonl([
        trace_request([span(tid(1), "00000000000000a1", "GET /", kind=2),
                       span(tid(1), "00000000000000a2", "GET", parent="00000000000000a1", kind=3,
                            attributes={"server.address": "db.example"})], service="front"),
        trace_request([span(tid(1), "00000000000000b1", "GET /api", parent="00000000000000a2",
                            kind=2)], service="api"),
    ])


def test_migration_indexes_an_old_store_and_a_read_only_one_falls_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "old.duckdb"
    with monkeypatch.context() as m:  # a store written by the telltale before the index
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        m.setattr(span_index, "index_batches", lambda *_: None)
        with Store(db, settings=pinned_settings(db)) as store:
            ingest_bytes(store, _requests(), source="old.jsonl")
            assert store.schema_version() == 2
    with Store(db, read_only=True) as store:
        old = dependencies(store, Scope())
        assert not old.indexed and "span index is missing" in old.notes()[-1]
        assert [(e.caller, e.callee, e.calls) for e in old.edges] == [("front", "api", 1)]
    with Store(db, settings=pinned_settings(db)) as store:  # migrates: version 3, indexed
        assert store.schema_version() == 3 and span_index.complete(store.con)
        new = dependencies(store, Scope())
        assert new.indexed and new.edges == old.edges and new.notes() == []
        # spans written around the write path leave the index incomplete: raw spans again
        store.con.execute("INSERT INTO otel_traces SELECT * FROM otel_traces LIMIT 1")
        assert not span_index.complete(store.con)
        assert not dependencies(store, Scope()).indexed
        span_index.rebuild(store.con)
        assert dependencies(store, Scope()).indexed


def test_a_failed_commit_indexes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "f.duckdb"
    with Store(db, settings=pinned_settings(db)) as store:
        def fail(*_: Any) -> int:
            raise RuntimeError("boom")
        monkeypatch.setattr("telltale.store.log_assign.assign", fail)
        data = _requests() + jsonl([{"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"timeUnixNano": str(T0), "body": {"stringValue": "hello"}}]}]}]}])
        with pytest.raises(RuntimeError):
            ingest_bytes(store, data, source="both.jsonl")
        assert store.query("SELECT count(*) FROM telltale_span_index")[0][0] == 0
        ingest_bytes(store, _requests(), source="spans.jsonl")
        assert span_index.complete(store.con)
        assert store.query("SELECT count(*) FROM telltale_span_index")[0][0] == 3


def _key(trace: str, span_id: str) -> int:
    """The key as specified (span_index_sql.py), computed without DuckDB: keys already on disk
    must be reproduced exactly by every later version."""
    if len(span_id) == 16:
        with_hex = int(hashlib.md5(trace.encode()).hexdigest()[:16], 16)
        try:
            return with_hex ^ int(span_id, 16)
        except ValueError:
            pass
    return int(hashlib.md5(f"{trace}:{span_id}".encode()).hexdigest()[:16], 16)


def test_keys_are_the_specified_stable_hash(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    with Store(db, settings=pinned_settings(db)) as store:
        link = {"traceId": tid(7), "spanId": "short"}  # not 16 hex digits: md5 of the pair
        data = _requests() + jsonl([trace_request([{**span(tid(2), "00000000000000c1", kind=5),
                                                    "links": [link]}], service="worker")])
        ingest_bytes(store, data, source="k.jsonl")
        rows = store.query("SELECT TraceId, SpanId, ParentSpanId, Links FROM otel_traces")
        expected = sorted((_key(t, s), _key(t, p) if p else None,
                           [_key(lk["TraceId"], lk["SpanId"]) for lk in links] or None)
                          for t, s, p, links in rows)
        assert sorted(store.query("SELECT Key, ParentKey, LinkKeys FROM telltale_span_index")) == expected
        assert _key(tid(1), "0000000000000002") == 16585052733013304587
