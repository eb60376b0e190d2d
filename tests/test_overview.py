"""The store overview finds what the simulator injected, measured against its ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from telltale.analyses.overview import overview
from telltale.analyses.quality import GroupBy, quality
from telltale.model import QualityFlag
from telltale.sim import SimConfig, SimResult, simulate
from telltale.store import Store


@pytest.fixture(scope="module")
def sim() -> SimResult:
    return simulate(SimConfig(duration_s=600))


@pytest.fixture
def store(tmp_path: Path, sim: SimResult) -> Store:
    s = Store(tmp_path / "o.duckdb")
    s.commit(sim.decoded(), source="sim", fmt="simulator", content_hash="sim")
    return s


def _incident(truth: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(i for i in truth["incidents"] if i["kind"] == kind)


def test_service_counts_match_truth(store: Store, sim: SimResult) -> None:
    with store:
        view = overview(store)
    by_service = {s.service: s for s in view.services}
    for name, truth in sim.truth["services"].items():
        assert by_service[name].spans >= truth["spans"]  # plus agent spawn spans (orchestrator)
        assert by_service[name].errors >= truth["errors"]
    assert sum(s.spans for s in view.services) == (sim.spans.num_rows + sim.agent_spans.num_rows)


def test_error_hotspot_is_the_injected_attribute_value(store: Store, sim: SimResult) -> None:
    burst = _incident(sim.truth, "error_burst")
    (key, value), = ((k, v) for k, v in burst["attributes"].items() if k.startswith("app."))
    # Looking at the burst's window, as a user who saw the error spike would.
    with store:
        top = overview(store, since=burst["start_ns"], until=burst["end_ns"], min_errors=5,
                       hotspots=1).hotspots[0]
    assert (top.service, top.key, top.value) == (burst["service"], key, value)
    assert top.errors >= burst["measured"]["tagged_errors_in_window"] // 2


def test_counts_cover_every_signal(store: Store, sim: SimResult) -> None:
    with store:
        counts = overview(store).counts
    assert counts["spans"] == sim.spans.num_rows + sim.agent_spans.num_rows
    assert counts["logs"] == sim.logs.num_rows
    assert counts["metric points"] == sum(t.num_rows for t in sim.metrics.values())
    assert counts["quarantined"] == 0


def test_stuck_worker_is_an_open_span(tmp_path: Path, sim: SimResult) -> None:
    """Through the real files: the worker that never completed shows as the one open span."""
    from telltale.ingest import ingest_paths
    from telltale.normalize.events import PRESETS
    from telltale.sim import write_agent_events, write_otlp_json

    files = write_otlp_json(sim, tmp_path / "f")
    agents = write_agent_events(sim, tmp_path / "f" / "agents.jsonl")
    with Store(tmp_path / "w.duckdb") as store:
        ingest_paths(store, [str(p) for p in files if p.name.startswith("traces")])
        ingest_paths(store, [str(agents)], mapping=dict(PRESETS["agent-spawn"]))
        spans = overview(store).open_spans
    stuck = sim.truth["agents"]["stuck_workers"]
    assert [s.attributes["agent.worker"] for s in spans] == stuck


def test_orphan_emitting_service_is_found(store: Store, sim: SimResult) -> None:
    """The catalog's callers lose their client spans for a while: the quality report by
    service puts every orphan there, as many as the simulator made."""
    with store:
        report = quality(store, by=GroupBy.SERVICE)
    orphans = {g.key: g.spans.flags[QualityFlag.ORPHAN] for g in report.groups
               if g.spans.flags[QualityFlag.ORPHAN]}
    truth = _incident(sim.truth, "orphan_spans")
    assert orphans == {truth["service"]: truth["measured"]["orphans"]}
