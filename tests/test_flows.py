"""Flow validation: hand-built traces with exact violations, the CLI's exit codes, spec errors,
and the simulator's real checkout flow (clean run passes; the latency regression is caught)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from conftest import MS, T0, S, jsonl, pinned_settings, sid, span, tid, trace_request
from telltale.analyses.flow_spec import RuleKind, SpecError, parse_spec
from telltale.analyses.flows import FlowsReport, check_flows
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.settings import ENV_DB
from telltale.sim import SimConfig, SimResult, simulate
from telltale.store import Store

SPEC = """
[[flow]]
name = "checkout"
root = "POST /checkout"
service = "frontend"
must_contain = ["payment.charge", "cart.reserve"]
order = [["cart.reserve", "payment.charge"]]
max_count = { "db.query" = 2 }
max_per = { op = "db.query", per = "cart.item", n = 1 }
must_not_contain = ["legacy.call"]
max_duration = "800ms"
no_errors = true

[[flow]]
name = "globs"
root = "frontend:POST /check*"
must_contain = ["shop:cart.*"]
max_count = { "shop:db.*" = 2 }
must_not_contain = ["frontend:db.query"]
"""

# Trace n: which variation of the checkout it is (1 passes).
PASSING, ORDER, MISSING, TOO_MANY_QUERIES, TOO_SLOW, ERRORS, LEGACY = range(1, 8)
OTHER_ROOT = 8


def _trace(n: int) -> list[dict[str, Any]]:
    """One checkout (frontend root + shop spans): reserve, item, query, charge — varied by n."""
    t, base = tid(n), T0 + n * S
    root_end = base + (900 if n == TOO_SLOW else 500) * MS
    root = span(t, sid(1), "POST /checkout", start=base, end=root_end, kind=2)
    ops = [("cart.reserve", 10), ("cart.item", 20), ("db.query", 25), ("payment.charge", 100)]
    if n == ORDER:
        ops = [("payment.charge", 10), ("cart.item", 20), ("db.query", 25), ("cart.reserve", 50)]
    if n == MISSING:
        ops = ops[:-1]
    if n == TOO_MANY_QUERIES:
        ops += [("db.query", 30), ("db.query", 35)]
    if n == LEGACY:
        ops.append(("legacy.call", 200))
    children = [span(t, sid(i + 2), name, parent=sid(1), start=base + at * MS,
                     end=base + (at + 5) * MS, status=2 if n == ERRORS and name == "db.query" else None)
                for i, (name, at) in enumerate(ops)]
    return [trace_request([root], service="frontend"), trace_request(children, service="shop")]


def _data() -> bytes:
    requests = [r for n in range(PASSING, LEGACY + 1) for r in _trace(n)]
    other = tid(OTHER_ROOT)
    requests.append(trace_request([span(other, sid(1), "GET /other", start=T0 + 8 * S, kind=2),
                                   span(other, sid(2), "legacy.call", parent=sid(1),
                                        start=T0 + 8 * S)], service="frontend"))
    return jsonl(requests)


@pytest.fixture(scope="module")
def shop_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flows") / "shop.duckdb"
    with Store(path, settings=pinned_settings(path)) as store:
        ingest_bytes(store, _data(), source="shop.jsonl")
    return path


@pytest.fixture
def shop(shop_db: Path) -> Iterator[Store]:
    with Store(shop_db, settings=pinned_settings(shop_db), read_only=True) as s:
        yield s


def _by_rule(report: FlowsReport, flow: str) -> dict[str, tuple[int, list[str]]]:
    f = next(f for f in report.flows if f.name == flow)
    return {r.text: (r.violations, r.examples) for r in f.rules}


def test_each_rule_finds_exactly_its_trace(shop: Store) -> None:
    report = check_flows(shop, Scope(), parse_spec(SPEC))
    checkout = report.flows[0]
    assert (checkout.traces, checkout.violating) == (7, 6)
    assert _by_rule(report, "checkout") == {
        'must_contain: "payment.charge"': (1, [tid(MISSING)]),
        'must_contain: "cart.reserve"': (0, []),
        'order: "cart.reserve" starts before "payment.charge"': (1, [tid(ORDER)]),
        'max_count: at most 2 "db.query" per trace': (1, [tid(TOO_MANY_QUERIES)]),
        'max_per: at most 1 "db.query" per "cart.item"': (1, [tid(TOO_MANY_QUERIES)]),
        'must_not_contain: "legacy.call"': (1, [tid(LEGACY)]),
        "max_duration: root takes at most 800ms": (1, [tid(TOO_SLOW)]),
        "no_errors: no span has error status": (1, [tid(ERRORS)]),
    }
    worst = {r.kind: r.worst for r in checkout.rules}
    assert worst[RuleKind.MAX_COUNT] == 3
    assert worst[RuleKind.MAX_PER] == 3
    assert worst[RuleKind.MAX_DURATION] == pytest.approx(900.0)
    assert worst[RuleKind.NO_ERRORS] == 1
    assert report.violated and checkout.violated


def test_globs_and_service_prefixes(shop: Store) -> None:
    report = check_flows(shop, Scope(), parse_spec(SPEC))
    globs = report.flows[1]
    assert globs.root == "frontend:POST /check*"
    assert globs.traces == 7  # GET /other is not a checkout
    assert _by_rule(report, "globs") == {
        'must_contain: "shop:cart.*"': (0, []),
        'max_count: at most 2 "shop:db.*" per trace': (1, [tid(TOO_MANY_QUERIES)]),
        'must_not_contain: "frontend:db.query"': (0, []),  # db.query runs in shop
    }


def test_expected_and_observed_paths(shop: Store) -> None:
    checkout = check_flows(shop, Scope(), parse_spec(SPEC)).flows[0]
    # The order rule puts cart.reserve first although must_contain lists it second.
    assert checkout.expected_path == ["frontend:POST /checkout", "cart.reserve", "payment.charge"]
    top = checkout.observed_paths[0]
    assert top.ops == ["frontend:POST /checkout", "cart.reserve", "cart.item", "db.query",
                       "payment.charge"]
    assert top.traces == 4  # passing, too many queries, too slow, errors
    assert checkout.observed_path == top.ops
    assert sum(p.traces for p in checkout.observed_paths) <= 7


def test_window_is_on_the_root_start(shop: Store) -> None:
    scope = Scope(since=T0 + TOO_MANY_QUERIES * S, until=T0 + ERRORS * S)
    checkout = check_flows(shop, scope, parse_spec(SPEC)).flows[0]
    assert (checkout.traces, checkout.violating) == (2, 2)  # too many queries, too slow
    assert check_flows(shop, Scope(since=T0 + 100 * S), parse_spec(SPEC)).flows[0].traces == 0


def test_passing_spec_and_examples_limit(shop: Store) -> None:
    spec = parse_spec('[[flow]]\nname = "ok"\nroot = "POST /checkout"\n'
                      'must_contain = ["cart.reserve"]\nmin_traces = 7\n')
    report = check_flows(shop, Scope(), spec)
    assert not report.violated and report.flows[0].traces == 7
    strict = parse_spec('[[flow]]\nname = "s"\nroot = "POST /checkout"\nmax_duration = "1ms"\n'
                        'min_traces = 8\n')
    flow = check_flows(shop, Scope(), strict, examples=2).flows[0]
    assert [(r.violations, r.examples) for r in flow.rules] == [
        (7, [tid(PASSING), tid(ORDER)]), (1, [])]
    only = check_flows(shop, Scope(), parse_spec('[[flow]]\nname = "m"\nroot = "POST /checkout"\n'
                                                 'min_traces = 8\n'))
    assert only.violated and only.flows[0].violating == 0
    assert only.to_rows().notes == ["m: only 7 traces checked (min_traces: at least 8 traces checked)",
                                    "1 of 1 flows violated"]


def test_rows_render_every_rule(shop: Store) -> None:
    rows = check_flows(shop, Scope(), parse_spec(SPEC)).to_rows()
    assert len(rows.rows) == 8 + 3
    assert {r["status"] for r in rows.rows if r["flow"] == "checkout"} == {"FAIL"}
    assert "checkout: 6 of 7 traces violate 7 rules" in rows.notes
    assert rows.extra["flows"][0]["expected_path"][0] == "frontend:POST /checkout"


# -- spec errors ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ('[[flow]]\nname = "a"\nroot = "r"\nmax_count = { "db" = "two" }\n',
     "spec:4: flow 1 (a): max_count: 'two' is not a count"),
    ('[[flow]]\nname = "a"\nroot = "r"\nmust_contian = ["x"]\n',
     "spec:4: flow 1 (a): must_contian: unknown key"),
    ('[[flow]]\nname = "a"\nroot = "r"\nmax_duration = 800\n',
     "spec:4: flow 1 (a): max_duration: 800 is not"),
    ('[[flow]]\nname = "a"\nroot = "r"\nmax_duration = "8 parsecs"\n',
     "spec:4: flow 1 (a): max_duration: bad"),
    ('[[flow]]\nname = "a"\nmust_contain = ["x"]\n', "spec:1: flow 1 (a): root: required"),
    ('[[flow]]\nname = "a"\nroot = "r"\norder = [["x", "y"], ["y", "x"]]\n',
     "spec:4: flow 1 (a): order: rules form a cycle: x → y → x"),
    ('[[flow]]\nname = "a"\nroot = "r"\nno_errors = true\n\n'
     '[[flow]]\nname = "a"\nroot = "s"\nno_errors = true\n',
     "spec:7: flow 2 (a): name: another flow"),
    ('[[flow]]\nname = "a"\nroot = "r"\nno_errors = "yes"\n', "spec:4: flow 1 (a): no_errors: must be"),
    ('[[flow]]\nname = "a"\nroot = "r"\n', "spec:1: flow 1 (a): flow has no rules"),
    ("[[flow]]\nname = \n", "spec: invalid TOML: Invalid value (at line 2, column 8)"),
    ('title = "x"\n', "spec:1: unknown top-level key 'title'"),
    ("", "spec: no [[flow]] tables"),
])
def test_bad_specs_name_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(text)
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


# -- CLI --------------------------------------------------------------------------------------

@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})


def _run(runner: CliRunner, db: Path, spec: Path, *args: str) -> Result:
    return runner.invoke(main, ["--db", str(db), "flows", "check", str(spec), *args])


def test_cli_exit_codes(runner: CliRunner, shop_db: Path, tmp_path: Path) -> None:
    violated = tmp_path / "violated.toml"
    violated.write_text(SPEC)
    res = _run(runner, shop_db, violated)
    assert res.exit_code == 1, res.output
    assert "checkout: 6 of 7 traces violate 7 rules" in res.stdout
    passing = tmp_path / "passing.toml"
    passing.write_text('[[flow]]\nname = "ok"\nroot = "POST /checkout"\nmust_contain = ["cart.reserve"]\n')
    res = _run(runner, shop_db, passing)
    assert res.exit_code == 0, res.output
    assert "all 1 flows pass" in res.stdout
    # The window decides which traces count: only the slow one is left.
    res = _run(runner, shop_db, violated, "--since", str(T0 + TOO_SLOW * S),
               "--until", str(T0 + ERRORS * S))
    assert res.exit_code == 1 and "checkout: 1 of 1 traces violate 1 rule" in res.stdout


def test_cli_bad_spec_exits_2_with_one_line(runner: CliRunner, shop_db: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[flow]]\nname = "a"\nroot = "r"\n\nmax_count = { "db" = -1 }\n')
    res = _run(runner, shop_db, bad)
    assert res.exit_code == 2
    lines = [ln for ln in (res.stderr + res.stdout).splitlines() if ln.strip()]
    assert lines == [f"Error: {bad}:5: flow 1 (a): max_count: -1 is not a count (a whole number >= 0)"]
    res = _run(runner, shop_db, tmp_path / "missing.toml")
    assert res.exit_code == 2 and "cannot read spec" in res.stderr
    # Nothing to check against is not "violated" either.
    good = tmp_path / "good.toml"
    good.write_text('[[flow]]\nname = "a"\nroot = "r"\nno_errors = true\n')
    res = _run(runner, tmp_path / "no.duckdb", good)
    assert res.exit_code == 2 and "no telltale store" in res.stderr
    res = _run(runner, shop_db, good, "--since", "yesterday-ish")
    assert res.exit_code == 2 and "bad time" in res.stderr


def test_cli_json_and_csv(runner: CliRunner, shop_db: Path, tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    res = _run(runner, shop_db, spec, "--format", "json", "--examples", "1")
    assert res.exit_code == 1
    doc = orjson.loads(res.stdout)
    assert doc["violated"] is True
    checkout = doc["flows"][0]
    assert checkout["traces"] == 7 and checkout["violating"] == 6
    assert checkout["observed_path"][:2] == ["frontend:POST /checkout", "cart.reserve"]
    assert {r["kind"]: r["examples"] for r in checkout["rules"]}["order"] == [tid(ORDER)]
    res = _run(runner, shop_db, spec, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(table) == 11 and table[0]["flow"] == "checkout"
    assert next(r for r in table if r["rule"].startswith("no_errors"))["examples"] == str([tid(ERRORS)])


# -- the simulator's checkout -----------------------------------------------------------------

SIM_SPEC = """
[[flow]]
name = "checkout"
root = "frontend:POST /checkout"
must_contain = ["gateway:POST /api/checkout", "auth:auth.AuthService/Verify",
                "checkout:POST /checkout", "cart:GET /cart/*", "payment:POST /charge",
                "checkout:INSERT shop.orders", "checkout:publish orders"]
order = [["auth:auth.AuthService/Verify", "checkout:POST /checkout"],
         ["cart:GET /cart/*", "checkout:compute order total", "payment:POST /charge",
          "checkout:INSERT shop.orders", "checkout:publish orders"]]
max_count = { "checkout:INSERT shop.orders" = 1, "payment:POST /charge" = 1 }
max_per = { op = "payment:INSERT shop.payments", per = "payment:POST /charge", n = 1 }
must_not_contain = ["catalog:*"]
max_duration = "250ms"
"""


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, SimResult]]:
    out = {}
    for name, incidents in (("clean", False), ("incidents", True)):
        result = simulate(SimConfig(duration_s=600, incidents=incidents))
        path = tmp_path_factory.mktemp(name) / "sim.duckdb"
        with Store(path) as store:
            store.commit(result.decoded(), source="sim", fmt="simulator", content_hash="sim")
        out[name] = (path, result)
    return out


def test_sim_checkout_flow_passes_when_clean(sims: dict[str, tuple[Path, SimResult]]) -> None:
    path, _ = sims["clean"]
    with Store(path, read_only=True) as store:
        flow = check_flows(store, Scope(), parse_spec(SIM_SPEC)).flows[0]
        roots = store.query("SELECT count(*) FROM otel_traces WHERE ParentSpanId = '' "
                            "AND ServiceName = 'frontend' AND SpanName = 'POST /checkout'")[0][0]
    assert flow.traces == roots > 500
    assert not flow.violated, [(r.text, r.violations) for r in flow.rules if r.violations]
    assert flow.observed_paths[0].traces == flow.traces  # every checkout takes the same path
    # The expected path is the observed one without the operations it does not require.
    assert [op for op in flow.observed_path if op in flow.expected_path] == flow.expected_path
    assert "payment:INSERT shop.payments" in flow.observed_path


def test_sim_duration_rule_catches_the_regression(sims: dict[str, tuple[Path, SimResult]]) -> None:
    path, result = sims["incidents"]
    deploy = next(i for i in result.truth["incidents"] if i["kind"] == "latency_regression")
    with Store(path, read_only=True) as store:
        flow = check_flows(store, Scope(), parse_spec(SIM_SPEC), examples=1000).flows[0]
        after = store.query("SELECT count(*) FROM otel_traces WHERE ParentSpanId = '' AND "
                            "ServiceName = 'frontend' AND SpanName = 'POST /checkout' "
                            "AND Timestamp >= $at", {"at": deploy["start_ns"]})[0][0]
        rules = {r.kind: r for r in flow.rules}
        slow = rules[RuleKind.MAX_DURATION]
        starts = store.query("SELECT min(Timestamp) FROM otel_traces WHERE ParentSpanId = '' "
                             "AND list_contains($ids, TraceId)", {"ids": slow.examples})[0][0]
    assert flow.violated
    assert [k for k, r in rules.items() if r.violations] == [RuleKind.MAX_DURATION]
    # Every slow checkout came after the deploy, and most of those after it are slow.
    assert starts >= deploy["start_ns"]
    assert len(slow.examples) == slow.violations == flow.violating
    assert 0.3 * after < slow.violations <= after
    # Before the deploy the same flow passes.
    with Store(path, read_only=True) as store:
        before = check_flows(store, Scope(until=deploy["start_ns"]), parse_spec(SIM_SPEC)).flows[0]
    assert before.traces > 200 and not before.violated
