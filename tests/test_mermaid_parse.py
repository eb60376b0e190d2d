"""Every diagram telltale writes goes through the real Mermaid (npm `mermaid@11`, pinned by
tests/js/package-lock.json) in Chromium: it must parse, render, and show its labels' text.
Random hostile names (quotes, brackets, arrows, comments, entity lookalikes, unicode) must do
the same. One rendering per diagram kind is saved as a PNG under tests/artifacts/."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import MS, T0
from telltale.analyses.deps import DependencyGraph, DepsLevel, Edge, EdgeKind, dependencies
from telltale.analyses.flow_spec import RuleKind, parse_spec
from telltale.analyses.flows import FlowResult, ObservedPath, RuleResult, check_flows
from telltale.analyses.phases import Phase, Phases, phases
from telltale.analyses.scope import Scope
from telltale.analyses.trace_detail import SpanDetail, TraceDetail, load_trace
from telltale.render.mermaid_flow import flow_diagram, flows_diagram
from telltale.render.mermaid_graph import dependency_flowchart
from telltale.render.mermaid_text import clip
from telltale.render.mermaid_trace import gantt_diagram, phases_gantt, sequence_diagram
from telltale.store import Store

JS = Path(__file__).parent / "js"
MERMAID_JS = JS / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
ARTIFACTS = Path(__file__).parent / "artifacts"
GOLDEN = Path(__file__).parent / "golden"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
        "--no-first-run", "--disable-component-update", "--disable-sync"]
# parse() then render(): the SVG's visible text (style sheets dropped), or the error message.
SIM_FLOWS = """
[[flow]]
name = "checkout"
root = "frontend:POST /checkout"
must_contain = ["checkout:POST /checkout", "cart:GET /cart/*", "payment:POST /charge"]
order = [["cart:GET /cart/*", "payment:POST /charge"]]
max_count = { "checkout:INSERT shop.orders" = 1 }
max_duration = "300ms"
"""
CHECK_JS = """async (text) => {
  try { await mermaid.parse(text); } catch (e) { return {error: 'parse: ' + (e.message || e)}; }
  try {
    const {svg} = await mermaid.render('d' + (window.__n = (window.__n || 0) + 1), text);
    const box = document.createElement('div');
    box.innerHTML = svg;
    box.querySelectorAll('style').forEach((s) => s.remove());
    return {text: box.textContent};
  } catch (e) { return {error: 'render: ' + (e.message || e)}; }
}"""
SHOW_JS = """async (text) => {
  const {svg} = await mermaid.render('shot', text);
  const style = 'width:1400px;padding:8px;background:white';
  document.body.innerHTML = '<div id="out" style="' + style + '">' + svg + '</div>';
}"""


class Mermaid:
    """One Chromium page with mermaid.min.js loaded, shared by the whole session."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def check(self, text: str) -> str:
        """The rendered diagram's visible text; fails the test with Mermaid's own message."""
        result = self.page.evaluate(CHECK_JS, text)
        if "error" in result:
            pytest.fail(f"Mermaid rejected the diagram: {result['error']}\n{text}")
        return str(result["text"])

    def screenshot(self, text: str, path: Path) -> None:
        self.page.evaluate(SHOW_JS, text)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.locator("#out").screenshot(path=str(path))


def _install_mermaid() -> str | None:
    """Install tests/js's locked packages if missing; the reason it could not, or None."""
    if MERMAID_JS.exists():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed, so the mermaid package cannot be installed"
    try:
        subprocess.run([npm, "ci", "--prefix", str(JS), "--no-audit", "--no-fund", "--ignore-scripts"],
                       check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"`npm ci --prefix tests/js` failed (registry unreachable?): {exc}"
    return None if MERMAID_JS.exists() else "npm ci did not install mermaid"


@pytest.fixture(scope="module")
def mermaid() -> Iterator[Mermaid]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (CI installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright not installed")
    reason = _install_mermaid()
    if reason:
        pytest.skip(reason)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_content("<!doctype html><html><body></body></html>")
            page.add_script_tag(path=str(MERMAID_JS))
            page.evaluate("mermaid.initialize({startOnLoad: false, securityLevel: 'strict'})")
            yield Mermaid(page)
        finally:
            browser.close()


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# -- golden files and the simulator's real traces ----------------------------------------------


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("mermaid_*.mmd")), ids=lambda p: p.stem)
def test_golden_diagrams_parse_and_render(mermaid: Mermaid, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    shown = _squash(mermaid.check(text))
    assert shown
    if path.stem in ("mermaid_sequence", "mermaid_gantt"):  # the hostile span name survives
        nasty = 'render "cart" [v2] --> {html}; #1 %% <b>ü</b> #quot; a|b `x` end'
        assert _squash(nasty) in shown
    mermaid.screenshot(text, ARTIFACTS / f"{path.stem}.png")


def test_simulated_traces_graph_and_flows_parse(mermaid: Mermaid, sim_store: Store) -> None:
    """Real-sized input: the most erroneous simulated traces, the window's phases, a flow
    check, the whole dependency graph at both levels."""
    ids = [r[0] for r in sim_store.con.execute(
        "SELECT TraceId FROM otel_traces GROUP BY TraceId "
        "ORDER BY count(*) FILTER (WHERE StatusCode = 'Error') DESC, count(*) DESC, TraceId LIMIT 3"
    ).fetchall()]
    for trace_id in ids:
        trace = load_trace(sim_store, trace_id)
        assert trace is not None
        for text in (sequence_diagram(trace), gantt_diagram(trace),
                     sequence_diagram(trace, max_messages=6)):
            mermaid.check(text)
    mermaid.check(phases_gantt(phases(sim_store, Scope())))
    flows = check_flows(sim_store, Scope(), parse_spec(SIM_FLOWS))
    assert flows.flows[0].traces > 100
    mermaid.check(flows_diagram(flows))
    for level in DepsLevel:
        graph = dependencies(sim_store, Scope(), level=level)
        assert graph.edges
        mermaid.check(dependency_flowchart(graph))
        mermaid.check(dependency_flowchart(graph, top=5, max_nodes=8))


# -- hostile names -----------------------------------------------------------------------------

_PIECES = ['"', "'", "#", ";", "%%", "%", ":", "-->", "->>", "--x", "-)", "[", "]", "{", "}", "(",
           ")", "|", "<", ">", "&", "`", "end", "#quot;", "#35;", "&amp;", "<br>", "<script>",
           "\\n", "\n", "\t", "ﬂ°°", "¶ß", "é", "中文", "🚀", "\u200b", "participant", "Note",
           "subgraph", "classDef", "style", "click", "title", "section", "as", " ", "x", "o",
           "call", "href", "dateFormat", "excludes", "weekday", "2024-01-01", "loop", "alt",
           "activate", "autonumber", "box", "rect", "critical", "break", "opt", "par"]
NAMES = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=3)),
                 min_size=1, max_size=8).map("".join).filter(lambda s: bool(clip(s)))


def _hostile_trace(service: str, callee: str, name: str, message: str) -> TraceDetail:
    t = "ab" * 16

    def sd(i: int, parent: int, svc: str, op: str, start: int, dur: int, err: bool = False,
           kind: str = "Server") -> SpanDetail:
        return SpanDetail(t, f"{i:016x}", f"{parent:016x}" if parent else "", op, kind, svc,
                          T0 + start * MS, dur * MS, "Error" if err else "Unset",
                          message if err else "", err)

    return TraceDetail(t, [sd(1, 0, service, name, 0, 50), sd(2, 1, service, "call", 1, 40, kind="Client"),
                           sd(3, 2, callee, name, 2, 30, err=True), sd(4, 3, callee, name, 3, 5)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(service=NAMES, callee=NAMES, name=NAMES, message=NAMES)
def test_hostile_names_parse_and_survive(mermaid: Mermaid, service: str, callee: str, name: str,
                                         message: str) -> None:
    trace = _hostile_trace(service, callee, name, message)
    shown = _squash(mermaid.check(sequence_diagram(trace)))
    for text in (clip(service, 60), clip(callee, 60), clip(name, 80), clip(message, 60)):
        assert _squash(text) in shown
    shown = _squash(mermaid.check(gantt_diagram(trace)))
    for text in (clip(service, 60), clip(callee, 60), clip(name, 80)):
        assert _squash(text) in shown
    graph = DependencyGraph(DepsLevel.OPERATION, [
        Edge(EdgeKind.CALL, service, callee, 3, 1, 1.0, 2.0, name, message),
        Edge(EdgeKind.DATABASE, callee, name, 2, 0, 1.0, 2.0, message, name)])
    shown = _squash(mermaid.check(dependency_flowchart(graph)))
    for text in (clip(service, 60), clip(callee, 60), clip(name, 80), clip(message, 80)):
        assert _squash(text) in shown
    window = Phases(Scope(), T0, T0 + 5 * MS, MS, [Phase(service, name, T0, T0 + 5 * MS, 3, 1),
                                                     Phase(callee, message, T0, T0 + MS, 1, 0)])
    shown = _squash(mermaid.check(phases_gantt(window)))
    for text in (clip(service, 60), clip(callee, 60), clip(name, 80), clip(message, 80)):
        assert _squash(text) in shown
    flow = FlowResult(name, service, 3, 1, [RuleResult(RuleKind.MUST_CONTAIN, message, 1, ["ab"])],
                      [service, name, callee], [ObservedPath([service, callee], 2)])
    shown = _squash(mermaid.check(flow_diagram(flow)))
    for text in (clip(service), clip(callee), clip(name), clip(message)):
        assert _squash(text) in shown
