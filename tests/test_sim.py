"""The simulator: determinism, realism invariants, ground truth, writers and the store."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telltale.analyses.quality import quality
from telltale.ingest import ingest_paths
from telltale.model import MetricType, QualityFlag, Signal
from telltale.normalize import staging
from telltale.sim import (
    SimConfig,
    SimResult,
    simulate,
    write_agent_events,
    write_broken_file,
    write_otlp_json,
    write_otlp_proto,
    write_truth,
)
from telltale.sim.agents import MODELS
from telltale.store import Store

SHORT = SimConfig(duration_s=240.0)


@pytest.fixture(scope="module")
def full() -> SimResult:
    return simulate(SimConfig())


@pytest.fixture(scope="module")
def short() -> SimResult:
    return simulate(SHORT)


def _write_all(result: SimResult, directory: Path) -> list[Path]:
    paths = write_otlp_json(result, directory) + write_otlp_proto(result, directory)
    paths.append(write_agent_events(result, directory / "agents.jsonl"))
    paths.append(write_broken_file(result, directory / "broken.jsonl"))
    paths.append(write_truth(result, directory / "truth.json"))
    return paths


def _digest(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _np(table: pa.Table, name: str) -> Any:
    return table.column(name).to_numpy(zero_copy_only=False)


def _delimited(data: bytes) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        size = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        yield data[pos:pos + size]
        pos += size


# -- determinism and size ---------------------------------------------------------------------


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    config = SimConfig(duration_s=90.0)
    first = _digest(_write_all(simulate(config), tmp_path / "a"))
    second = _digest(_write_all(simulate(config), tmp_path / "b"))
    assert first == second
    assert len(first) == 9
    other = simulate(SimConfig(duration_s=90.0, seed=8))
    third = _digest(write_otlp_json(other, tmp_path / "c"))
    assert third["traces.jsonl"] != first["traces.jsonl"]


def test_default_config_is_big_enough(full: SimResult, short: SimResult) -> None:
    assert full.spans.num_rows >= 300_000
    # Volume is proportional to the window.
    ratio = full.spans.num_rows / short.spans.num_rows
    assert 6.5 < ratio < 8.5


# -- shape of the staged tables ---------------------------------------------------------------


def _all_spans(result: SimResult) -> pa.Table:
    """The OTLP spans and the agent events' worker spans: what the store holds of both."""
    return pa.concat_tables([result.spans, result.agent_spans])


def test_tables_follow_the_staging_schemas(short: SimResult) -> None:
    assert short.spans.schema == staging.SPANS
    assert short.agent_spans.schema == staging.SPANS
    assert short.agent_spans.column("Pos")[0].as_py() == "sim agent span 1"
    assert short.logs.schema == staging.LOGS
    for kind, table in short.metrics.items():
        assert table.schema == staging.METRICS[kind]
    assert set(short.metrics) == {MetricType.GAUGE, MetricType.SUM, MetricType.HISTOGRAM}
    assert short.spans.column("Pos")[0].as_py() == "sim span 1"
    assert pc.min(short.spans.column("RecordBytes")).as_py() > 0
    for name, width in (("TraceId", 32), ("SpanId", 16)):
        assert pc.all(pc.match_substring_regex(short.spans.column(name),
                                               f"^[0-9a-f]{{{width}}}$")).as_py()
    parents = pc.drop_null(short.spans.column("ParentSpanId"))
    assert pc.all(pc.match_substring_regex(parents, "^([0-9a-f]{16})?$")).as_py()
    both = _all_spans(short)
    keys = pc.binary_join_element_wise(both.column("TraceId"), both.column("SpanId"), "/")
    assert pc.count_distinct(keys).as_py() == both.num_rows
    services = set(short.spans.column("ServiceName").to_pylist())
    assert 8 <= len(services) <= 12
    assert set(short.spans.column("SpanKind").to_pylist()) == {
        "Server", "Client", "Internal", "Producer", "Consumer"}


def test_children_lie_within_their_parents(short: SimResult) -> None:
    s = _all_spans(short).select(["TraceId", "SpanId", "ParentSpanId", "StartNs", "EndNs"])
    parents = s.select(["TraceId", "SpanId", "StartNs", "EndNs"]).rename_columns(
        ["TraceId", "ParentSpanId", "PStart", "PEnd"])
    joined = s.join(parents, ["TraceId", "ParentSpanId"], join_type="inner")
    with_parent = pc.sum(pc.not_equal(s["ParentSpanId"], "").cast(pa.int64())).as_py()
    assert joined.num_rows == with_parent - short.truth["totals"]["orphans"]
    assert pc.all(pc.greater_equal(joined["StartNs"], joined["PStart"])).as_py()
    assert pc.all(pc.less_equal(joined["EndNs"], joined["PEnd"])).as_py()
    assert pc.all(pc.greater(s["EndNs"], s["StartNs"])).as_py()


def test_consumers_start_new_traces_linked_to_producers(short: SimResult) -> None:
    s = short.spans
    consumers = s.filter(pc.equal(s["SpanKind"], "Consumer"))
    assert consumers.num_rows > 0
    assert set(consumers["ParentSpanId"].to_pylist()) == {""}
    links = pc.list_flatten(consumers["Links"])
    producers = s.filter(pc.equal(s["SpanKind"], "Producer"))
    assert set(pc.struct_field(links, "SpanId").to_pylist()) <= set(
        producers["SpanId"].to_pylist())


# -- ground truth -----------------------------------------------------------------------------


def _incident(result: SimResult, kind: str) -> dict[str, Any]:
    return next(i for i in result.truth["incidents"] if i["kind"] == kind)


def test_latency_regression_after_deploy(full: SimResult) -> None:
    inc = _incident(full, "latency_regression")
    s = full.spans
    sel = pc.and_(pc.equal(s["ServiceName"], inc["service"]), pc.equal(s["SpanKind"], "Server"))
    server = s.filter(sel)
    start, dur = _np(server, "StartNs"), _np(server, "EndNs") - _np(server, "StartNs")
    after = start >= inc["start_ns"]
    assert dur[after].mean() >= 2 * dur[~after].mean()
    assert inc["measured"]["mean_ns_after"] == pytest.approx(dur[after].mean())
    version = pc.map_lookup(server["ResourceAttributes"], "service.version", "first")
    versions = np.asarray(version.to_pylist())
    assert set(versions[after]) == {inc["attributes"]["service.version"]["after"]}
    assert set(versions[~after]) == {inc["attributes"]["service.version"]["before"]}


def test_error_burst_is_tied_to_one_attribute_value(full: SimResult) -> None:
    inc = _incident(full, "error_burst")
    (key, value), = [(k, v) for k, v in inc["attributes"].items() if k.startswith("app.")]
    s = full.spans
    tagged = np.asarray(pc.equal(pc.map_lookup(s["SpanAttributes"], key, "first"), value)
                        .fill_null(False))
    start = _np(s, "StartNs")
    inside = (start >= inc["start_ns"]) & (start < inc["end_ns"])
    error = _np(s, "StatusCode") == "Error"
    assert error[tagged & inside].mean() > 0.3
    assert error[tagged & ~inside].mean() < 0.02
    assert inc["measured"]["tagged_errors_in_window"] == int((error & tagged & inside).sum())
    codes = pc.map_lookup(s.filter(pa.array(error & tagged & inside))["SpanAttributes"],
                          "http.response.status_code", "first").to_pylist()
    assert all(int(c) >= 500 for c in codes)
    assert "503" in codes


def test_orphans_match_the_truth(short: SimResult) -> None:
    s = short.spans
    # The LLM calls' parents are the worker spans, which only the agent events hold.
    both = _all_spans(short)
    known = set(zip(both["TraceId"].to_pylist(), both["SpanId"].to_pylist(), strict=True))
    orphans = [i for i, (t, p) in enumerate(zip(s["TraceId"].to_pylist(),
                                                s["ParentSpanId"].to_pylist(), strict=True))
               if p and (t, p) not in known]
    assert len(orphans) == short.truth["totals"]["orphans"] > 0
    inc = _incident(short, "orphan_spans")
    assert {s["ServiceName"][i].as_py() for i in orphans} == {inc["service"]}
    starts = [s["StartNs"][i].as_py() for i in orphans]
    assert min(starts) >= inc["start_ns"]
    assert inc["measured"]["orphans"] == len(orphans)
    agent = short.agent_spans
    assert all((t, p) in known for t, p in zip(agent["TraceId"].to_pylist(),
                                               agent["ParentSpanId"].to_pylist(), strict=True))


def test_broken_file_has_exactly_the_stated_broken_lines(tmp_path: Path,
                                                         short: SimResult) -> None:
    truth = short.truth["broken_file"]
    lines = write_broken_file(short, tmp_path / "b.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == truth["lines"] == 210
    unparsable, bad_shape, good_spans = [], [], 0
    reasons = {}
    for number, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            reasons[str(number)] = "bad_encoding"
        try:
            doc = json.loads(line)
        except ValueError:
            reasons.setdefault(str(number), "unparsable")
            unparsable.append(number)
            continue
        if not (isinstance(doc, dict) and isinstance(doc.get("resourceSpans"), list)):
            reasons[str(number)] = "bad_shape"
            bad_shape.append(number)
            continue
        good_spans += sum(len(ss["spans"]) for rs in doc["resourceSpans"]
                          for ss in rs["scopeSpans"])
    assert unparsable == truth["unparsable_lines"]
    assert bad_shape == truth["bad_shape_lines"]
    assert sorted(unparsable + bad_shape) == truth["broken_lines"]
    assert len(truth["broken_lines"]) == 190
    assert reasons == truth["expected_reasons"]
    assert len(set(truth["kinds"].values())) >= 8
    assert good_spans == truth["good_spans"] > 0


def test_swap_crisis_in_host_metrics(short: SimResult) -> None:
    inc = _incident(short, "swap_crisis")
    g = short.metrics[MetricType.GAUGE]
    host = pc.map_lookup(g["ResourceAttributes"], "host.name", "first")
    swap = g.filter(pc.and_(pc.equal(host, inc["host"]),
                            pc.equal(g["MetricName"], "system.paging.utilization")))
    t, v = _np(swap, "TimeUnix"), _np(swap, "Value")
    assert v[t >= inc["start_ns"]].max() >= 0.85
    assert v[t < inc["start_ns"]].max() < 0.2
    names = set(g["MetricName"].to_pylist())
    assert {"system.cpu.utilization", "system.memory.utilization",
            "system.filesystem.utilization", "system.cpu.load_average.1m"} <= names


def test_flaky_ci_job_fails_then_passes_on_retry(full: SimResult) -> None:
    inc = _incident(full, "flaky_ci_job")
    s = full.spans
    job = inc["attributes"]["cicd.pipeline.task.name"]
    jobs = s.filter(pc.equal(s["SpanName"], job))
    attempt = pc.map_lookup(jobs["SpanAttributes"], "ci.job.attempt", "first").to_pylist()
    failed = jobs.filter(pc.equal(jobs["StatusCode"], "Error"))
    retried = [a for a in attempt if a == "2"]
    assert failed.num_rows == len(retried) == inc["measured"]["flaky_first_failures"] > 0
    roots = s.filter(pc.and_(pc.equal(s["ServiceName"], "ci"), pc.equal(s["ParentSpanId"], "")))
    attrs = roots["SpanAttributes"].to_pylist()
    assert all({"cicd.pipeline.name", "cicd.pipeline.run.id", "vcs.ref.head.name"}
               <= dict(a).keys() for a in attrs)


def test_stuck_worker_spawns_and_never_completes(full: SimResult) -> None:
    spawned = {e["worker"] for e in full.agent_events if e["event"] == "spawn"}
    completed = {e["worker"] for e in full.agent_events if e["event"] == "complete"}
    assert completed <= spawned
    stuck = sorted(spawned - completed)
    assert stuck == full.truth["agents"]["stuck_workers"] == [
        _incident(full, "stuck_worker")["attributes"]["agent.worker.id"]]
    # Worker spans are staged from the agent events only (a stuck one never ends, so never
    # exports): none is an OTLP span.
    workers = pc.map_lookup(full.agent_spans["SpanAttributes"], "agent.worker.id", "first")
    assert sorted(workers.to_pylist()) == sorted(completed)
    assert pc.all(pc.starts_with(full.agent_spans["SpanName"], "spawn ")).as_py()
    assert not pc.any(pc.starts_with(full.spans["SpanName"], "spawn ")).as_py()
    assert pc.all(pc.is_null(pc.map_lookup(full.spans["SpanAttributes"], "agent.worker.id",
                                           "first"))).as_py()
    # Every event names its worker span, that span's trace and its parent, the run's root.
    roots = full.spans.filter(pc.starts_with(full.spans["SpanName"], "orchestrate "))
    root_ids = set(zip(roots["TraceId"].to_pylist(), roots["SpanId"].to_pylist(), strict=True))
    assert all((e["trace_id"], e["parent_id"]) in root_ids for e in full.agent_events)
    spawned_at = {e["worker"]: e for e in full.agent_events if e["event"] == "spawn"}
    assert all(spawned_at[e["worker"]]["parent_id"] == e["parent_id"]
               for e in full.agent_events if e["event"] == "complete")
    assert {"model", "caste", "task", "source", "outcome", "duration_ms", "tokens"} <= next(
        e for e in full.agent_events if e["event"] == "complete").keys()


def test_service_metrics_agree_with_spans(short: SimResult) -> None:
    s = short.spans
    http_server = pc.and_(pc.equal(s["SpanKind"], "Server"), pc.is_valid(
        pc.map_lookup(s["SpanAttributes"], "http.route", "first")))
    hist = short.metrics[MetricType.HISTOGRAM]
    assert pc.sum(hist["Count"]).as_py() == pc.sum(http_server.cast(pa.int64())).as_py()
    sums = short.metrics[MetricType.SUM]
    last = sums.filter(pc.equal(sums["TimeUnix"], pc.max(sums["TimeUnix"])))
    assert pc.sum(last["Value"]).as_py() == pc.sum(http_server.cast(pa.int64())).as_py()


def test_correlated_logs_point_at_real_spans(short: SimResult) -> None:
    logs = short.logs.filter(pc.not_equal(short.logs["SpanId"], ""))
    assert logs.num_rows > 0
    assert pc.all(pc.is_in(logs["SpanId"], value_set=short.spans["SpanId"])).as_py()
    assert set(short.logs["SeverityText"].to_pylist()) == {"INFO", "WARN", "ERROR"}
    templates = short.truth["log_templates"]
    assert sum(t["count"] for t in templates) == short.logs.num_rows


def test_without_incidents_nothing_is_injected() -> None:
    calm = simulate(SimConfig(duration_s=120.0, incidents=False))
    assert calm.truth["incidents"] == []
    assert calm.truth["totals"]["orphans"] == 0
    versions = pc.map_lookup(calm.spans["ResourceAttributes"], "service.version", "first")
    checkout = pc.equal(calm.spans["ServiceName"], "checkout")
    assert set(versions.filter(checkout).to_pylist()) == {"1.4.2"}
    assert all(e["event"] in {"spawn", "complete"} for e in calm.agent_events)
    assert len([e for e in calm.agent_events if e["event"] == "spawn"]) == len(
        [e for e in calm.agent_events if e["event"] == "complete"])


def test_truth_file_round_trips(tmp_path: Path, short: SimResult) -> None:
    path = write_truth(short, tmp_path / "truth.json")
    assert json.loads(path.read_bytes()) == short.truth
    kinds = {i["kind"] for i in short.truth["incidents"]}
    assert kinds == {"latency_regression", "error_burst", "orphan_spans", "broken_lines",
                     "swap_crisis", "flaky_ci_job", "stuck_worker", "n_plus_one"}
    for incident in short.truth["incidents"]:
        assert incident["start_ns"] <= incident["end_ns"]
        assert {"name", "kind", "attributes"} <= incident.keys()
    services = short.truth["services"]
    assert sum(v["spans"] for v in services.values()) == short.spans.num_rows
    assert sum(v["errors"] for v in services.values()) == short.truth["totals"]["errors"]
    assert sum(v["orphans"] for v in services.values()) == short.truth["totals"]["orphans"]
    # Service counts are of the OTLP spans: the orchestrator's are its runs and LLM calls; its
    # worker spans are counted where they live, in the agent events.
    agents = short.truth["agents"]
    assert services["orchestrator"]["spans"] == agents["runs"] + agents["llm_calls"]
    spawn = agents["spawn_spans"]
    assert spawn["source"] == "agent_events" and spawn["staged_as"] == "agent_spans"
    assert spawn["spans"] == short.truth["totals"]["agent_spans"] == short.agent_spans.num_rows
    assert spawn["spans"] == agents["completes"] == agents["spawns"] - spawn["open_in_events"]
    assert spawn["errors"] == pc.sum(pc.equal(short.agent_spans["StatusCode"], "Error")
                                     .cast(pa.int64())).as_py()


# -- writers and the store --------------------------------------------------------------------


def _b64_ids(node: Any) -> None:
    """OTLP JSON uses hex ids where the protobuf JSON mapping wants base64."""
    if isinstance(node, dict):
        for key in ("traceId", "spanId", "parentSpanId"):
            if isinstance(node.get(key), str):
                node[key] = base64.b64encode(bytes.fromhex(node[key])).decode()
        for child in node.values():
            _b64_ids(child)
    elif isinstance(node, list):
        for child in node:
            _b64_ids(child)


def test_otlp_json_parses_with_the_protobuf_mapping(tmp_path: Path, short: SimResult) -> None:
    traces, logs, metrics = write_otlp_json(short, tmp_path)
    counted = {"traces": 0, "logs": 0, "metrics": 0}
    nested = {b'"events"': 0, b'"links"': 0}
    for path, message, key in ((traces, ExportTraceServiceRequest, "traces"),
                               (logs, ExportLogsServiceRequest, "logs"),
                               (metrics, ExportMetricsServiceRequest, "metrics")):
        for number, line in enumerate(path.read_bytes().splitlines()):
            doc = json.loads(line)
            counted[key] += _count_json(doc)
            # The protobuf JSON parser is slow: check a sample, and lines with events/links.
            rare = [k for k in nested if k in line and nested[k] < 3]
            if number % 8 == 0 or key != "traces" or rare:
                for k in rare:
                    nested[k] += 1
                _b64_ids(doc)
                request: Any = json_format.ParseDict(doc, message())
                assert _count(request) == _count_json(json.loads(line))
    assert nested == {b'"events"': 3, b'"links"': 3}
    assert counted["traces"] == short.spans.num_rows
    assert counted["logs"] == short.logs.num_rows
    assert counted["metrics"] == sum(t.num_rows for t in short.metrics.values())
    first = json.loads(traces.read_bytes().split(b"\n", 1)[0])
    resource = {a["key"] for a in first["resourceSpans"][0]["resource"]["attributes"]}
    assert {"service.name", "service.version", "host.name"} <= resource
    span = first["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert isinstance(span["kind"], int) and isinstance(span["startTimeUnixNano"], str)
    assert re.fullmatch("[0-9a-f]{32}", span["traceId"])
    sizes = [len(json.loads(x)["resourceSpans"][0]["scopeSpans"][0]["spans"])
             for x in traces.read_bytes().splitlines()]
    assert max(sizes) == short.config.spans_per_request


def _count_json(doc: dict[str, Any]) -> int:
    if "resourceSpans" in doc:
        return sum(len(ss["spans"]) for rs in doc["resourceSpans"] for ss in rs["scopeSpans"])
    if "resourceLogs" in doc:
        return sum(len(sl["logRecords"]) for rl in doc["resourceLogs"] for sl in rl["scopeLogs"])
    return sum(len(next(v for k, v in m.items() if isinstance(v, dict))["dataPoints"])
               for rm in doc["resourceMetrics"] for sm in rm["scopeMetrics"]
               for m in sm["metrics"])


def _count(request: Any) -> int:
    if isinstance(request, ExportTraceServiceRequest):
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if isinstance(request, ExportLogsServiceRequest):
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                total += len(getattr(m, m.WhichOneof("data")).data_points)
    return total


def test_otlp_proto_parses_with_the_proto_classes(tmp_path: Path, short: SimResult) -> None:
    paths = write_otlp_proto(short, tmp_path)
    expected = [short.spans.num_rows, short.logs.num_rows,
                sum(t.num_rows for t in short.metrics.values())]
    classes: list[Any] = [ExportTraceServiceRequest, ExportLogsServiceRequest,
                          ExportMetricsServiceRequest]
    for path, cls, want in zip(paths, classes, expected, strict=True):
        got = sum(_count(cls.FromString(m)) for m in _delimited(path.read_bytes()))
        assert got == want, path.name


def test_commit_into_the_store(tmp_path: Path, short: SimResult) -> None:
    spans = short.spans.num_rows + short.agent_spans.num_rows
    with Store(tmp_path / "t.duckdb") as store:
        report = store.commit(short.decoded(), source="sim", fmt="sim", content_hash="sim")
        assert report.total_quarantined == 0
        assert report.stored[Signal.TRACES] == spans
        assert report.stored[Signal.LOGS] == short.logs.num_rows
        assert report.stored[Signal.METRICS] == sum(t.num_rows for t in short.metrics.values())
        assert store.query("SELECT count(*) FROM otel_traces")[0][0] == spans
        errors = store.query("SELECT count(*) FROM otel_traces WHERE StatusCode = 'Error'")
        assert errors[0][0] == (short.truth["totals"]["errors"]
                                + short.truth["agents"]["spawn_spans"]["errors"])
        report = quality(store)
    assert report.total.flags[QualityFlag.DUPLICATE] == 0
    assert report.total.flags[QualityFlag.ORPHAN] == short.truth["totals"]["orphans"]


def test_store_quarantines_exactly_the_broken_lines(tmp_path: Path, short: SimResult) -> None:
    """The broken file through the project's OTLP/JSON decoder: the truth is what gets stored."""
    otlp_json = pytest.importorskip("telltale.normalize.otlp_json")
    options = pytest.importorskip("telltale.normalize.options")
    truth = short.truth["broken_file"]
    data = write_broken_file(short, tmp_path / "b.jsonl").read_bytes()
    decoded = otlp_json.decode(data, options.DecodeOptions(source="b.jsonl"))
    with Store(tmp_path / "b.duckdb") as store:
        report = store.commit(decoded, source="b.jsonl", fmt="otlp-json", content_hash="b")
    assert report.stored[Signal.TRACES] == truth["good_spans"]
    expected = Counter(truth["expected_reasons"].values())
    assert {reason.value: n for reason, n in report.quarantined.items()} == expected


_ORPHANS = """
    SELECT s.ServiceName, s.SpanName, b.Source FROM otel_traces s
    JOIN telltale_ingest_batches b USING (BatchId)
    LEFT JOIN otel_traces p ON p.TraceId = s.TraceId AND p.SpanId = s.ParentSpanId
    WHERE s.ParentSpanId <> '' AND p.SpanId IS NULL
"""


def test_traces_and_agent_events_complement_each_other(tmp_path: Path) -> None:
    """traces.jsonl + agents.jsonl, ingested as `telltale demo` does: each span stored once,
    and every agent trace whole across the two sources."""
    result = simulate(SimConfig(duration_s=300))
    traces = write_otlp_json(result, tmp_path)[0]
    agents = write_agent_events(result, tmp_path / "agents.jsonl")
    truth = result.truth["agents"]
    with Store(tmp_path / "t.duckdb") as store:
        results = ingest_paths(store, [str(traces)])
        results += ingest_paths(store, [str(agents)], mapping={"preset": "agent-spawn"})
        assert [r.report.total_quarantined for r in results if r.report] == [0, 0]
        dups = store.query("SELECT count(*) FROM (SELECT TraceId, SpanId FROM otel_traces"
                           " GROUP BY ALL HAVING count(*) > 1)")[0][0]
        orphans = store.query(_ORPHANS)
        # The spawn spans (agents.jsonl) hang off the orchestrate roots (traces.jsonl), and
        # the LLM calls (traces.jsonl) off the spawn spans.
        links = store.query("""
            SELECT s.SpanName, split_part(p.SpanName, ' ', 1) AS parent, count(*)
            FROM otel_traces s
            JOIN otel_traces p ON p.TraceId = s.TraceId AND p.SpanId = s.ParentSpanId
            WHERE s.SpanName = 'agent.spawn' OR s.SpanName LIKE 'chat %'
            GROUP BY ALL ORDER BY ALL""")
        stored = set(store.query("SELECT TraceId, SpanId, ParentSpanId FROM otel_traces"
                                 " WHERE coalesce(SpanAttributes['telltale.open'], '') = ''"))
        report = quality(store)
    assert dups == 0
    assert report.total.flags[QualityFlag.DUPLICATE] == 0
    # The only orphans are the injected ones, in the OTLP spans. No orchestrator span and no
    # agent-event span is one: not even in the stuck worker's run, whose root (timed out 600 s
    # after the stuck spawn, so ending after this 300 s window) the simulator still exports.
    inc = next(i for i in result.truth["incidents"] if i["kind"] == "orphan_spans")
    assert {(service, src) for service, _, src in orphans} == {(inc["service"], str(traces))}
    [stuck] = [e for e in result.agent_events if e["worker"] in truth["stuck_workers"]]
    root = result.spans.filter(pc.and_(pc.equal(result.spans["TraceId"], stuck["trace_id"]),
                                       pc.equal(result.spans["SpanId"], stuck["parent_id"])))
    assert root["EndNs"].to_pylist()[0] > result.truth["window"]["end_ns"]
    assert len(orphans) == result.truth["totals"]["orphans"] == report.total.flags[
        QualityFlag.ORPHAN] > 0
    assert [(child, parent) for child, parent, _ in links] == [
        ("agent.spawn", "orchestrate"), *((f"chat {m}", "agent.spawn") for m in sorted(MODELS))]
    assert sum(n for child, _, n in links if child == "agent.spawn") == truth["spawns"]
    assert sum(n for child, _, n in links if child != "agent.spawn") == truth["llm_calls"]
    # The same spans as committing `decoded()` (plus the stuck worker's open span).
    staged = _all_spans(result).select(["TraceId", "SpanId", "ParentSpanId"])
    assert stored == set(zip(*(staged[c].to_pylist() for c in staged.column_names),
                             strict=True))
