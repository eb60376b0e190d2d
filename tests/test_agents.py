"""Agent analytics: exact counts, Wilson ranking, GenAI spans, the simulator's bad pair, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import commit_decoded
from telltale.analyses import agents
from telltale.analyses.scope import Scope
from telltale.model import Format
from telltale.normalize import staging
from telltale.normalize.staging import Decoded
from telltale.sim import SimConfig, simulate
from telltale.store.duck import Store

T0 = 1_700_000_000_000_000_000


def _spans(specs: list[tuple[dict[str, str], str, int]]) -> Decoded:
    """(attributes, status, duration ms) → one staged span each."""
    n = len(specs)
    cols: dict[str, list[Any]] = {
        "Pos": [f"line {i + 1}" for i in range(n)], "RecordBytes": [100] * n,
        "StartNs": [T0 + i * 60_000_000_000 for i in range(n)],
        "EndNs": [T0 + i * 60_000_000_000 + ms * 1_000_000 for i, (_, _, ms) in enumerate(specs)],
        "TraceId": [f"{i + 1:032x}" for i in range(n)], "SpanId": [f"{i + 1:016x}" for i in range(n)],
        "ParentSpanId": [""] * n, "SpanName": ["span"] * n, "SpanKind": ["Internal"] * n,
        "ServiceName": ["svc"] * n, "ResourceAttributes": [[("service.name", "svc")]] * n,
        "SpanAttributes": [list(a.items()) for a, _, _ in specs],
        "StatusCode": [s for _, s, _ in specs], "StatusMessage": [None] * n,
    }
    return Decoded(spans=[staging.table(staging.SPANS, cols)])


@pytest.fixture
def hand_store(tmp_path: Path) -> Any:
    # big/fail: 300 of 1000 fail; tiny/fail: 2 of 2; good: 1 of 50. Tokens priced per model.
    specs: list[tuple[dict[str, str], str, int]] = []
    for i in range(1000):
        specs.append(({"agent.model": "big", "agent.caste": "worker",
                       "agent.outcome": "timeout" if i < 100 else "failure" if i < 300 else "success",
                       "gen_ai.usage.input_tokens": "1000", "gen_ai.usage.output_tokens": "100"},
                      "Error" if i < 300 else "Ok", 10 + i))
    specs += [({"model": "tiny", "role": "worker", "error.type": "KeyError"}, "Error", 5)] * 2
    specs += [({"gen_ai.request.model": "good", "gen_ai.agent.name": "reviewer",
                "gen_ai.provider.name": "acme"}, "Error" if i == 0 else "Ok", 20) for i in range(50)]
    specs += [({"gen_ai.request.model": "good", "gen_ai.operation.name": "chat",
                "gen_ai.usage.input_tokens": "7"}, "Unset", 3)] * 4  # calls, not agents
    store, _ = commit_decoded(tmp_path, _spans(specs), Format.EVENTS_JSONL)
    yield store
    store.close()


def test_exact_counts_and_wilson_ranking(hand_store: Store) -> None:
    prices = {"big": (2.0, 10.0)}
    report = agents.worst(hand_store, Scope(), prices=prices)
    assert [g.key for g in report.groups] == [("big", "worker"), ("tiny", "worker"),
                                              ("good", "reviewer")]
    big, tiny, good = report.groups
    assert (big.n, big.failures, big.error_classes) == (1000, 300, {"failure": 200, "timeout": 100})
    assert big.interval == pytest.approx((0.2724, 0.3291), abs=1e-4)
    assert (tiny.n, tiny.failures, tiny.error_classes) == (2, 2, {"KeyError": 2})
    assert tiny.interval == pytest.approx((0.3424, 1.0), abs=1e-4)  # 2/2: rate 1, but unsure
    # Wilson's lower bound alone would rank 2/2 first; the shrunk bound weighs the evidence.
    assert tiny.interval[0] > big.interval[0] and big.rank_bound > tiny.rank_bound  # type: ignore
    assert big.rank_bound == pytest.approx(0.272, abs=0.003)
    assert good.failure_rate == pytest.approx(0.02)
    assert big.tokens == 1_100_000 and big.cost_usd == pytest.approx(1000 * (2.0 + 1.0) / 1000)
    assert tiny.cost_usd == 0.0 and big.p50_ms == pytest.approx(509.5)
    calls = agents.summarise(hand_store, Scope(), ("model",), unit="call")
    assert [(g.key, g.n, g.tokens) for g in calls.groups] == [(("good",), 4, 28)]
    assert any("no price for good" in n for n in calls.notes)


def test_wilson_interval_values() -> None:
    assert agents.wilson(0, 0) == (0.0, 1.0)
    lo, hi = agents.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)


def test_prices_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('"my-model" = { input = 1.5, output = 2 }\n')
    prices = agents.load_prices(path)
    assert prices["my-model"] == (1.5, 2.0) and "claude-sonnet-4-5" in prices
    path.write_text('"bad" = { input = 1 }\n')
    with pytest.raises(ValueError):
        agents.load_prices(path)


def test_simulator_bad_pair_first(tmp_path: Path) -> None:
    result = simulate(SimConfig(duration_s=600))
    truth = result.truth["agents"]["outcomes_by_model_caste"]
    store = Store(tmp_path / "sim.duckdb")
    try:
        store.commit(result.decoded(), source="sim", fmt="simulator", content_hash="sim")
        report = agents.worst(store, Scope(), top=None)
        trend = agents.trends(store, Scope(), ("model",), bucket_s=300)
    finally:
        store.close()
    expected = {tuple(k.split("/")): (sum(v.values()), v["failure"] + v["timeout"])
                for k, v in truth.items() if sum(v.values())}
    assert {g.key: (g.n, g.failures) for g in report.groups} == expected
    # The simulator's designed worst pair (lowest success probability) comes first.
    p = result.truth["agents"]["success_probability"]
    designed = min(((m, c) for m in p["model"] for c in p["caste_adjustment"]),
                   key=lambda mc: p["model"][mc[0]] + p["caste_adjustment"][mc[1]])
    first = report.groups[0]
    assert first.key == designed
    n, failures = expected[designed]
    assert first.failure_rate == pytest.approx(failures / n)
    assert first.interval[0] < failures / n < first.interval[1]
    assert sum(pt.n for pt in trend.points) == sum(n for n, _ in expected.values())


def test_cli(hand_store: Store, tmp_path: Path) -> None:
    from telltale.cli import main
    from telltale.commands import agents as agents_cmd

    if "agents" not in main.commands:
        agents_cmd.register(main)
    db = str(tmp_path / "t.duckdb")
    hand_store.close()
    runner = CliRunner()
    out = runner.invoke(main, ["--db", db, "agents", "worst", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["rows"]
    assert (rows[0]["model"], rows[0]["failures"], rows[0]["n"]) == ("big", 300, 1000)
    for args in (["summary", "--by", "task,source"], ["models"], ["trends", "--bucket", "600"]):
        out = runner.invoke(main, ["--db", db, "agents", *args])
        assert out.exit_code == 0, out.output
    bad = runner.invoke(main, ["--db", db, "agents", "summary", "--by", "colour"])
    assert bad.exit_code != 0 and "choose from" in bad.output
