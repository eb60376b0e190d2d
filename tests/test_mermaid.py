"""Mermaid diagrams: golden files from a small hand-built store (pinned ids and times), the
escaping of hostile names, stable ids, the size caps, and the `telltale mermaid` commands.
tests/test_mermaid_parse.py checks every diagram here with the real Mermaid parser."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from conftest import MS, T0, S, jsonl, pinned_settings, sid, span, tid, trace_request
from telltale.analyses.deps import DependencyGraph, DepsLevel, Edge, EdgeKind, dependencies
from telltale.analyses.flow_spec import parse_spec
from telltale.analyses.flows import FlowsReport, check_flows
from telltale.analyses.phases import phases
from telltale.analyses.scope import Scope
from telltale.analyses.trace_detail import SpanDetail, TraceDetail, load_trace
from telltale.ingest import ingest_bytes
from telltale.render.mermaid_flow import common_order, flows_diagram
from telltale.render.mermaid_graph import dependency_flowchart, select_edges
from telltale.render.mermaid_text import NodeIds, clip, duration, label, percent, quoted
from telltale.render.mermaid_trace import gantt_diagram, phases_gantt, sequence_diagram
from telltale.settings import ENV_DB
from telltale.store import Store

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TELLTALE_UPDATE_GOLDEN") == "1"
INTERNAL, SERVER, CLIENT = 1, 2, 3
ERROR = 2
# A span name built to break a naive diagram: quotes, brackets, an arrow, a comment, a
# statement separator, an entity lookalike, HTML and unicode.
NASTY = 'render "cart" [v2] --> {html}; #1 %% <b>ü</b> #quot; a|b `x` end'
CHECKOUT = tid(1)
SPEC = """
[[flow]]
name = "checkout"
root = "POST /checkout"
service = "frontend"
must_contain = ["GET /cart/{id}", "charge"]
order = [["GET /cart/{id}", "charge"]]
no_errors = true

[[flow]]
name = "browse \\"quoted\\" [x]"
root = "GET /"
must_contain = ["GET /cart/{id}"]
"""


def _at(n: int, a: int, b: int) -> dict[str, int]:
    return {"start": T0 + n * S + a * MS, "end": T0 + n * S + b * MS}


def _checkout(n: int, *, charge_first: bool = False, declined: bool = False,
              no_charge: bool = False) -> dict[str, list[dict[str, Any]]]:
    """One checkout: frontend → api (cart, a nasty internal span, a db query) and
    frontend → payments (charge); spans per service."""
    t = tid(n)
    cart, pay = ((55, 95), (5, 45)) if charge_first else ((5, 45), (50, 95))
    out: dict[str, list[dict[str, Any]]] = {
        "frontend": [
            span(t, sid(1), "POST /checkout", kind=SERVER, status=ERROR if declined else None,
                 **_at(n, 0, 100)),
            span(t, sid(2), "GET", parent=sid(1), kind=CLIENT, **_at(n, *cart)),
        ],
        "api": [
            span(t, sid(3), "GET /cart/{id}", parent=sid(2), kind=SERVER,
                 **_at(n, cart[0] + 2, cart[1] - 2)),
            span(t, sid(4), NASTY, parent=sid(3), kind=INTERNAL, **_at(n, cart[0] + 5, cart[0] + 15)),
            span(t, sid(5), "SELECT cart", parent=sid(3), kind=CLIENT,
                 **_at(n, cart[0] + 15, cart[0] + 25),
                 attributes={"db.system": "postgresql", "db.namespace": "shop"}),
        ],
        "payments": [],
    }
    if not no_charge:
        out["frontend"].append(span(t, sid(6), "POST", parent=sid(1), kind=CLIENT, **_at(n, *pay)))
        out["payments"].append(span(
            t, sid(7), "charge", parent=sid(6), kind=SERVER, status=ERROR if declined else None,
            message="card declined: <insufficient funds>; retry=no" if declined else "",
            **_at(n, pay[0] + 2, pay[1] - 2)))
    if n == 1:  # an orphan: its parent span was never stored
        out["api"].append(span(t, sid(8), "late callback", parent=sid(99), kind=SERVER,
                               start=T0 + n * S + 120 * MS, end=T0 + n * S + 120 * MS + 400_000))
    return out


def _requests() -> list[dict[str, Any]]:
    traces = [_checkout(1, declined=True), _checkout(2, charge_first=True), _checkout(3),
              _checkout(4, no_charge=True)]
    per_service: dict[str, list[dict[str, Any]]] = {}
    for trace in traces:
        for service, spans in trace.items():
            per_service.setdefault(service, []).extend(spans)
    return [trace_request(spans, service=service) for service, spans in sorted(per_service.items())]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mermaid") / "m.duckdb"
    with Store(path, settings=pinned_settings(path)) as store:
        report = ingest_bytes(store, jsonl(_requests()), source="mermaid.jsonl").report
        assert report is not None and report.total_quarantined == 0
    return path


@pytest.fixture(scope="module")
def store(db: Path) -> Iterator[Store]:
    with Store(db, settings=pinned_settings(db), read_only=True) as s:
        yield s


@pytest.fixture(scope="module")
def trace(store: Store) -> TraceDetail:
    found = load_trace(store, CHECKOUT)
    assert found is not None
    return found


def diagrams(store: Store, trace: TraceDetail) -> dict[str, str]:
    """Every golden diagram, by golden file stem (also what the parser test checks)."""
    report = check_flows(store, Scope(), parse_spec(SPEC))
    return {
        "mermaid_sequence": sequence_diagram(trace, critical={sid(1), sid(7)}),
        "mermaid_gantt": gantt_diagram(trace, critical={sid(1), sid(7)}),
        "mermaid_graph": dependency_flowchart(dependencies(store, Scope())),
        "mermaid_graph_operations": dependency_flowchart(
            dependencies(store, Scope(), level=DepsLevel.OPERATION), direction="TB"),
        "mermaid_flow": flows_diagram(report),
        "mermaid_phases": phases_gantt(phases(store, Scope(), buckets=6)),
    }


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.mmd"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}: run with TELLTALE_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{path} differs"


@pytest.mark.parametrize("name", ["mermaid_sequence", "mermaid_gantt", "mermaid_graph",
                                  "mermaid_graph_operations", "mermaid_flow", "mermaid_phases"])
def test_golden_diagrams(store: Store, trace: TraceDetail, name: str) -> None:
    text = diagrams(store, trace)[name]
    check_golden(name, text)
    assert text == diagrams(store, trace)[name]  # deterministic


# -- escaping and ids --------------------------------------------------------------------------


def test_label_encodes_syntax_and_keeps_text_readable() -> None:
    assert label('a "b"; #c') == "a #quot;b#quot;#59; #35;c"
    assert label("GET /api-v2 (x) · ü ★") == "GET /api-v2 (x) · ü ★"  # nothing to encode
    assert label("a --> b -x") == "a #45;#45;#gt; b -x"
    assert label("100% [ok] {id} |x| `t` <b>&") == (
        "100#37; #91;ok#93; #123;id#125; #124;x#124; #96;t#96; #lt;b#gt;#amp;")
    assert label("multi\nline\ttext\u200b end") == "multi line text end"
    assert label("ﬂ°°35¶ß") == "fl°°35¶ ß"  # Mermaid's own entity markers, broken up
    assert label("x" * 200, 10) == "xxxxxxxxx…"
    assert quoted("") == '""'
    # Nothing left that Mermaid reads as syntax: only entity codes use # and ;.
    for text in (NASTY, "a;b#c%%d:e", "-->>--x--)"):
        body = re.sub(r"#(\d+|quot|lt|gt|amp);", "", label(text))
        assert not set(body) & set('"#;%:<>&`|[]{}'), body
        assert "--" not in body


def test_node_ids_are_stable_sanitized_and_collision_proof() -> None:
    keys = ["a-b", "a b", "a_b", "a_b_2", "end", "", "ü/x", "x" * 80]
    ids = NodeIds("n", keys)
    assert [ids[k] for k in keys] == [
        "n_a_b_2", "n_a_b", "n_a_b_3", "n_a_b_2_2", "n_end", "n", "n_x",
        "n_" + "x" * 40]
    assert len({ids[k] for k in keys}) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", ids[k]) for k in keys)
    again = NodeIds("n", reversed(keys))
    assert all(ids[k] == again[k] for k in keys)


def test_durations_and_percent_text() -> None:
    assert [duration(n) for n in (400_000, 1_500_000, 9_999_000_000, 12_300_000_000)] == [
        "400 µs", "1.5 ms", "9999.0 ms", "12.30 s"]
    assert [percent(x) for x in (0.0, 0.0004, 0.018, 0.5, 1.0)] == ["0%", "<0.1%", "1.8%", "50%", "100%"]


# -- sequence and gantt ------------------------------------------------------------------------


def test_sequence_draws_calls_replies_errors_and_orphans(trace: TraceDetail) -> None:
    text = sequence_diagram(trace)
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    assert lines[2:5] == ["    participant s0 as frontend", "    participant s1 as api",
                          "    participant s2 as payments"]
    assert "    s0->>+s1: GET /cart/#123;id#125;" in lines
    assert "    s1-->>-s0: 36.0 ms" in lines
    # the callee failed: a cross reply with its status message, escaped
    assert any(ln.startswith("    s2--x-s0: 41.0 ms · error “card declined#58; "
                             "#lt;insufficient funds#gt;#59; retry=no”") for ln in lines)
    # client spans standing for a call are not repeated as self-calls; other spans are
    assert not any(ln.startswith("    s0->>s0: GET ") for ln in lines)
    assert any(ln.startswith(f"    s1->>s1: {label(NASTY, 200)[:20]}") for ln in lines)
    assert any("late callback" in ln and "orphan, parent 0000000000000063 not stored" in ln
               for ln in lines)
    # every activation is closed
    assert text.count("->>+") == text.count("-->>-") + text.count("--x-")


def test_sequence_shows_a_client_side_failure() -> None:
    """A client span that timed out while its callee finished fine: the reply is a cross
    carrying the client's message."""
    def sd(i: int, parent: int, kind: str, service: str, err: str = "") -> SpanDetail:
        return SpanDetail(CHECKOUT, sid(i), sid(parent) if parent else "", f"op{i}", kind, service,
                          T0 + i * MS, 50 * MS, "Error" if err else "Unset", err, bool(err))

    text = sequence_diagram(TraceDetail(CHECKOUT, [
        sd(1, 0, "Server", "a"), sd(2, 1, "Client", "a", "timeout"), sd(3, 2, "Server", "b")]))
    assert "    s1--x-s0: 50.0 ms · error “timeout”" in text.splitlines()
    assert "1 error," in text


def _wide_trace(children: int) -> TraceDetail:
    root = SpanDetail(CHECKOUT, sid(1), "", "root", "Server", "a", T0, 1000 * MS, "Unset", "", False)
    spans = [root] + [
        SpanDetail(CHECKOUT, sid(i + 2), sid(1), f"op{i}", "Server", "b" if i % 2 else "a",
                   T0 + i * MS, MS, "Unset", "", False) for i in range(children)]
    return TraceDetail(CHECKOUT, spans)


def test_sequence_cap_counts_what_it_leaves_out() -> None:
    text = sequence_diagram(_wide_trace(300), max_messages=50)
    arrows = [ln for ln in text.splitlines() if re.match(r"\s+s\d+-", ln)]
    assert len(arrows) <= 50
    calls = text.count("->>+")
    assert calls == text.count("-->>-")  # activations balanced even when cut
    drawn = calls + sum(1 for ln in arrows if re.match(r"\s+s0->>s0", ln))
    assert f"Note over s0: {300 - drawn} more spans not drawn (limit 50 messages)" in text
    assert "more span" not in sequence_diagram(_wide_trace(10))
    # A parent cycle (corrupt data) has no root to start from: counted, not looped over.
    cycle = [*_wide_trace(2).spans,
             SpanDetail(CHECKOUT, sid(90), sid(91), "x", "Server", "a", T0, MS, "Unset", "", False),
             SpanDetail(CHECKOUT, sid(91), sid(90), "y", "Server", "a", T0, MS, "Unset", "", False)]
    text = sequence_diagram(TraceDetail(CHECKOUT, cycle))
    assert "Note over s0: 2 more spans not drawn (not reachable from a root)" in text


def test_gantt_sections_offsets_and_tags(trace: TraceDetail) -> None:
    text = gantt_diagram(trace, critical={sid(3)})
    lines = text.splitlines()
    assert lines[:5] == ["gantt", "    title trace 00000000000000000000000000000001 (120.4 ms)",
                         "    dateFormat x", "    axisFormat %S.%L s", "    todayMarker off"]
    sections = [ln.strip() for ln in lines if ln.strip().startswith("section ")]
    assert sections == ["section frontend", "section api", "section payments"]
    assert "    POST /checkout (100.0 ms) :crit, t0, 0, 100" in lines  # errored root
    assert "    GET /cart/{id} (36.0 ms) :active, t2, 7, 43".replace("{id}", "#123;id#125;") in lines
    assert "    late callback (400 µs) :t7, 120, 121" in lines  # sub-ms: drawn 1 ms wide
    capped = gantt_diagram(trace, max_tasks=3)
    assert len([ln for ln in capped.splitlines() if re.search(r":(\w+, )*t\d+, ", ln)]) == 3
    assert "first 3 of 8 spans" in capped


def test_phases_join_consecutive_buckets(store: Store) -> None:
    """Roots start at 1, 2, 3 and 4 s (checkout 1 failed); each lasts 100 ms."""
    assert [(p.roots, p.errors) for p in phases(store, Scope(), buckets=3).phases] == [(4, 1)]
    six = phases(store, Scope(), buckets=6)  # buckets of 516.7 ms: 0, 1 | 3 | 5
    assert [(p.roots, p.errors, p.start_ns - T0, p.end_ns - T0) for p in six.phases] == [
        (2, 1, 1 * S, 2 * S + 100 * MS), (1, 0, 3 * S, 3 * S + 100 * MS),
        (1, 0, 4 * S, 4 * S + 100 * MS)]
    assert len(phases(store, Scope(), buckets=60).phases) == 4
    assert phases(store, Scope(since=T0 + 10 * S)).phases == []
    text = phases_gantt(six)
    assert "    POST /checkout · 2 traces, 1 error :crit, p0, 1735689601000, 1735689602100" in text
    assert "    POST /checkout · 1 trace :p1, 1735689603000, 1735689603100" in text
    assert "first 1 of 3 phases" in phases_gantt(six, max_tasks=1)
    assert "nothing to draw" in phases_gantt(phases(store, Scope(since=T0 + 10 * S)))


# -- dependency flowchart ----------------------------------------------------------------------


def _graph(n: int) -> DependencyGraph:
    edges = [Edge(EdgeKind.CALL, f"svc{i:02d}", f"svc{i + 1:02d}", 1000 - i, i % 3, 1.0, 2.0)
             for i in range(n)]
    return DependencyGraph(DepsLevel.SERVICE, edges)


def test_graph_top_and_max_nodes_keep_the_busiest_and_say_what_is_cut() -> None:
    graph = _graph(30)
    top = select_edges(graph, top=5)
    assert [e.caller for e in top] == ["svc00", "svc01", "svc02", "svc03", "svc04"]
    small = select_edges(graph, max_nodes=4)
    assert [(e.caller, e.callee) for e in small] == [("svc00", "svc01"), ("svc01", "svc02"),
                                                    ("svc02", "svc03")]
    text = dependency_flowchart(graph, top=5)
    assert text.count("-->|") == 5
    assert "leftout[\"25 quieter edges (24,575 calls) and 25 nodes not drawn" in text
    assert "leftout" not in dependency_flowchart(graph)
    huge = dependency_flowchart(_graph(200), max_nodes=1000)  # Mermaid's size limits
    assert huge.count("-->|") == 150 and 'leftout["50 quieter edges' in huge


def test_graph_marks_error_heavy_edges_and_peers(store: Store) -> None:
    text = dependency_flowchart(dependencies(store, Scope()))
    lines = text.splitlines()
    pay = next(i for i, ln in enumerate(ln for ln in lines if "-->|" in ln) if "n_payments" in ln)
    assert f"    linkStyle {pay} stroke:#d62728,stroke-width:3px,color:#d62728" in lines
    assert '    n_frontend -->|"3 calls · 33#37; errors · p95 41.0 ms"| n_payments' in lines
    assert '    n_postgresql_shop[("postgresql/shop")]' in lines
    assert "    class n_postgresql_shop peer" in lines
    assert "    class n_payments failing" in lines
    empty = dependency_flowchart(DependencyGraph(DepsLevel.SERVICE, []))
    assert "no calls between services in scope" in empty


# -- flows -------------------------------------------------------------------------------------


def test_common_order_finds_the_steps_in_expected_order() -> None:
    assert common_order(["r", "a", "b"], ["r", "b", "a"]) in ({0, 1}, {0, 2})
    assert common_order(["r", "a", "b"], ["r", "a", "b"]) == {0, 1, 2}
    assert common_order(["r", "a"], ["x", "r"]) == {1}


def test_flow_diagram_shows_expected_observed_and_verdicts(store: Store) -> None:
    report: FlowsReport = check_flows(store, Scope(), parse_spec(SPEC))
    text = flows_diagram(report)
    assert 'subgraph f0["checkout · FAIL · 3 of 4 traces violate a rule"]' in text
    assert 'f0_e0["frontend#58;POST /checkout"]' in text
    assert "f0_e0 --> f0_e1 --> f0_e2" in text
    assert '["missing#58; charge"]' in text  # trace 4 never charged
    assert "✗ no_errors#58; no span has error status · 1 trace · e.g. " + CHECKOUT in text
    assert 'subgraph f1["browse #quot;quoted#quot; #91;x#93; · no traces · no trace with root GET /"]' in text
    classes = dict(re.findall(r"^    class (\S+) (\w+)$", text, re.M)[i][::-1]
                   for i in range(len(re.findall(r"^    class ", text, re.M))))
    assert "f0_p0_0" in classes["inorder"].split(",")
    misplaced = classes.get("misplaced", "").split(",")
    assert any(m.startswith("f0_p") for m in misplaced)  # trace 2 charged before the cart


# -- the CLI -----------------------------------------------------------------------------------


def _main() -> click.Group:
    from telltale.cli import main
    from telltale.commands import mermaid

    if "mermaid" not in main.commands:  # until cli.COMMAND_MODULES lists it
        mermaid.register(main)
    return main


def _run(db: Path, *args: str) -> Result:
    return CliRunner().invoke(_main(), list(args), env={ENV_DB: str(db)}, catch_exceptions=False)


def test_cli_commands_print_the_library_diagrams(db: Path, store: Store, trace: TraceDetail) -> None:
    got = _run(db, "mermaid", "trace", CHECKOUT.upper())
    assert got.exit_code == 0, got.output
    assert got.output == sequence_diagram(trace, critical={s.span_id for s in _critical(store)})
    got = _run(db, "mermaid", "timeline", CHECKOUT, "--no-critical")
    assert got.output == gantt_diagram(trace)
    got = _run(db, "mermaid", "phases", "--buckets", "6")
    assert got.output == phases_gantt(phases(store, Scope(), buckets=6))
    got = _run(db, "mermaid", "graph", "--top", "1")
    assert got.exit_code == 0 and got.output.count("-->|") == 1
    assert _run(db, "deps", "--format", "mermaid").output == dependency_flowchart(
        dependencies(store, Scope()))


def _critical(store: Store) -> list[Any]:
    from telltale.analyses.critical_path import critical_path

    return critical_path(store, CHECKOUT).segments


def test_cli_flow_and_flows_check_mermaid(db: Path, store: Store, tmp_path: Path) -> None:
    spec = tmp_path / "flows.toml"
    spec.write_text(SPEC, encoding="utf-8")
    expected = flows_diagram(check_flows(store, Scope(), parse_spec(SPEC)))
    got = _run(db, "mermaid", "flow", str(spec))
    assert got.exit_code == 0 and got.output == expected
    checked = _run(db, "flows", "check", str(spec), "--format", "mermaid")
    assert checked.exit_code == 1 and checked.output == expected  # violated: CI exit code kept
    one = _run(db, "mermaid", "flow", str(spec), "--flow", "checkout")
    assert one.exit_code == 0 and "subgraph f1" not in one.output
    bad = _run(db, "mermaid", "flow", str(spec), "--flow", "nope")
    assert bad.exit_code == 1 and bad.output.strip() == f"Error: {spec}: no flow named 'nope'"


def test_cli_unknown_trace_is_one_line_error(db: Path) -> None:
    for command in ("trace", "timeline"):
        got = _run(db, "mermaid", command, "ab" * 16)
        assert got.exit_code == 1
        assert got.output == f"Error: no spans stored for trace {'ab' * 16}\n"


def test_clip_normalizes_what_labels_show() -> None:
    assert clip("  a\n\n b\u2028c ") == "a b c"
    assert clip("") == ""
