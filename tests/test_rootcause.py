"""Root-cause ranking finds what the simulator injected, and `telltale eval nezha` scores a
Nezha-layout directory end to end (a synthetic one always; the real one when ../shared has it)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from telltale.analyses.eval_nezha import evaluate_nezha, load_directory, load_faults
from telltale.analyses.rootcause import rank_root_causes
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.normalize import nezha_logs, nezha_metrics
from telltale.settings import ENV_DB
from telltale.sim import SimResult
from telltale.store import Store

NEZHA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nezha" / "trainticket-2023-01-29"
S = 10**9


def _incident(sim: SimResult, kind: str) -> dict[str, Any]:
    return next(i for i in sim.truth["incidents"] if i["kind"] == kind)


def test_checkout_deploy_ranks_checkout_first(sim: SimResult, sim_db: Path) -> None:
    deploy = _incident(sim, "latency_regression")
    window = sim.truth["window"]
    with Store(sim_db, read_only=True) as store:
        ranking = rank_root_causes(store, Scope(deploy["start_ns"], window["end_ns"]),
                                   Scope(window["start_ns"], deploy["start_ns"]))
    top = ranking.ranked[0]
    assert top.service == deploy["service"] == "checkout"
    # The evidence is its own code's slow-down (its spans x3 slower: its own time more), not
    # its callees'.
    assert top.evidence.self_time_shift > math.log(2)
    assert top.standouts["self_time"] == max(r.standouts["self_time"] for r in ranking.ranked)
    assert any("self time" in reason for reason in top.reasons)


def test_payment_error_burst_ranks_payment_first(sim: SimResult, sim_db: Path) -> None:
    """Within the shop's services. The agent orchestrator is another system, with an incident
    of its own (the stuck worker) that starts just before the burst; the ranking rightly finds
    it anomalous too, so it is left out of this question, as a user scoping to the shop would."""
    burst = _incident(sim, "error_burst")
    length = burst["end_ns"] - burst["start_ns"]
    shop = tuple(s for s in sim.truth["services"] if s not in {"orchestrator", "ci"})
    with Store(sim_db, read_only=True) as store:
        ranking = rank_root_causes(
            store, Scope(burst["start_ns"], burst["end_ns"], services=shop),
            Scope(burst["start_ns"] - 2 * length, burst["start_ns"], services=shop))
    top = ranking.ranked[0]
    assert top.service == "payment"
    assert top.evidence.error_rate_incident > top.evidence.error_rate_baseline
    assert any("503" in message for message in top.evidence.new_error_types)
    # Callers saw the failures too, but only as propagated errors: no origin-error standout.
    checkout = next(r for r in ranking.ranked if r.service == "checkout")
    assert checkout.standouts["errors"] < top.standouts["errors"] / 4


def test_rootcause_command_json(sim: SimResult, sim_db: Path) -> None:
    deploy = _incident(sim, "latency_regression")
    res = CliRunner(env={ENV_DB: None}).invoke(main, [
        "--db", str(sim_db), "rootcause", "--since", str(deploy["start_ns"]),
        "--until", str(sim.truth["window"]["end_ns"]), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.output)
    assert doc["rows"][0]["service"] == "checkout"
    assert doc["evidence"][0]["self_time_operation"]
    # Default baseline: an equally long window right before the incident.
    length = sim.truth["window"]["end_ns"] - deploy["start_ns"]
    assert doc["baseline"] == {"since": deploy["start_ns"] - length,
                               "until": deploy["start_ns"], "services": [], "operations": []}


# -- a tiny Nezha-layout directory -------------------------------------------------------------

T0 = 1_674_982_800  # 2023-01-29 09:00:00 UTC
PODS = {"ts-gateway-service": "ts-gateway-service-6f6cfc45b-h5m2n",
        "ts-a-service": "ts-a-service-5dc8d4f9fd-46997",
        "ts-b-service": "ts-b-service-866bd68c97-xcqfx",
        "ts-c-service": "ts-c-service-7b6dc75c45-2z9p2"}
HEADER = "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration"


def _trace_rows(start_s: int, seconds: int, b_ms: float, first_id: int,
                c_ms: float = 5.0) -> list[str]:
    """One request a second: gateway → a → b, a → c (b's own time is `b_ms`, c's `c_ms`)."""
    rows = []
    for i in range(seconds):
        n = first_id + i
        t = (start_s + i) * S
        spans = [("1", "root", "ts-gateway-service", "/api", 0, 30 + b_ms),
                 ("2", "1", "ts-a-service", "/a", 2, 25 + b_ms),
                 ("3", "2", "ts-b-service", "/b", 4, b_ms),
                 ("4", "2", "ts-c-service", "/c", 6 + b_ms, c_ms + (i % 3) * 0.1)]
        for sid, parent, svc, op, off_ms, dur_ms in spans:
            start, dur_ns = t + int(off_ms * 1e6), int(dur_ms * 1e6)
            parent_id = parent if parent == "root" else f"{n:012x}{int(parent):04x}"
            rows.append(f"{n:032x},{n:012x}{int(sid):04x},{parent_id},{PODS[svc]},{op},{start},"
                        f"{start + dur_ns},{dur_ns // 1000}")
    return rows


def _write_gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


@pytest.fixture(scope="module")
def nezha_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nezha")
    faults = {"09": [
        {"inject_time": "2023-01-29 09:10:00", "inject_timestamp": "0",
         "inject_pod": PODS["ts-b-service"], "inject_type": "exception"},
        {"inject_time": "2023-01-29 09:20:00", "inject_timestamp": "0",
         "inject_pod": PODS["ts-c-service"], "inject_type": "cpu_contention"}]}
    (root / "fault_list.json").write_bytes(orjson.dumps(faults))
    _write_gz(root / "baseline" / "trace" / "09_01_trace.csv.gz",
              [HEADER, *_trace_rows(T0, 60, 10.0, 1)])
    _write_gz(root / "trace" / "09_10_trace.csv.gz",
              [HEADER, *_trace_rows(T0 + 540, 60, 10.0, 1000), *_trace_rows(T0 + 600, 120, 80.0, 2000)])
    _write_gz(root / "trace" / "09_20_trace.csv.gz",
              [HEADER, *_trace_rows(T0 + 1140, 180, 10.0, 3000)])
    for svc, pod in PODS.items():
        lines = ["Time,TimeStamp,PodName,CpuUsage(m),PodSuccessRate(%)"]
        for minute in range(-60, 31):
            hot = svc == "ts-c-service" and 20 <= minute < 23
            cpu = 500.0 if hot else 10.0 + (minute % 4)
            lines.append(f"x,{T0 + minute * 60 + 9},{pod},{cpu},{'nan' if minute % 7 == 0 else 100}")
        _write_gz(root / "metric" / f"{pod}_metric.csv.gz", lines)
    log = ('2023-01-29T09:10:01Z,{ns},1.2.3.4,{pod},server,{t:032x},{t:012x}0003,'
           '"{{""log"":""09:10:01.000 ERROR  b.Impl#12 boom {t}\\n"",""stream"":""stdout""}}"')
    _write_gz(root / "log" / "09_10_log.csv.gz",
              ["Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,SpanID,Log",
               *[log.format(ns=(T0 + 601 + i) * S, pod=PODS["ts-b-service"], t=2000 + i)
                 for i in range(5)]])
    return root


def test_nezha_decoders(nezha_dir: Path) -> None:
    metric = nezha_metrics.decode(gzip.decompress(
        (nezha_dir / "metric" / f"{PODS['ts-c-service']}_metric.csv.gz").read_bytes()))
    (table,) = next(iter(metric.metrics.values()))
    assert set(table.column("ServiceName").to_pylist()) == {"ts-c-service"}
    assert table.num_rows == 91 + 91 - 13  # two columns, 13 NaN success rates dropped
    assert dict(table.column("ResourceAttributes")[0].as_py())["k8s.pod.name"] == PODS["ts-c-service"]
    logs = nezha_logs.decode(gzip.decompress((nezha_dir / "log" / "09_10_log.csv.gz").read_bytes()))
    row = logs.logs[0].slice(0, 1).to_pylist()[0]
    assert (row["ServiceName"], row["SeverityText"], row["SeverityNumber"]) == ("ts-b-service", "ERROR", 17)
    assert row["Body"].startswith("09:10:01.000 ERROR  b.Impl#12 boom")
    assert row["Timestamp"] == (T0 + 601) * S
    assert [f.service for f in load_faults(nezha_dir)] == ["ts-b-service", "ts-c-service"]


def test_eval_nezha_synthetic_finds_both_faults(nezha_dir: Path) -> None:
    evaluation = evaluate_nezha(nezha_dir)
    assert [r.rank for r in evaluation.results] == [1, 1]
    assert evaluation.summary() == {"faults": 2, "AS@1": 100.0, "AS@3": 100.0, "AS@5": 100.0}
    assert "baseline/" in evaluation.baseline


def test_eval_nezha_command(nezha_dir: Path) -> None:
    res = CliRunner().invoke(main, ["eval", "nezha", str(nezha_dir), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.output)
    assert (doc["faults"], doc["AS@1"], doc["AS@3"], doc["AS@5"]) == (2, 100.0, 100.0, 100.0)
    assert [d["service"] for d in doc["details"]] == ["ts-b-service", "ts-c-service"]
    table = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["eval", "nezha", str(nezha_dir)])
    assert table.exit_code == 0 and "AS@1 100.00 %" in table.output


def test_eval_nezha_without_fault_list_is_a_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["eval", "nezha", str(tmp_path)])
    assert res.exit_code == 1 and "fault_list.json" in res.output


def test_eval_nezha_by_type_in_json(nezha_dir: Path) -> None:
    doc = orjson.loads(CliRunner().invoke(main, ["eval", "nezha", str(nezha_dir), "--format",
                                                 "json"]).output)
    assert doc["by_type"] == {
        "cpu_contention": {"faults": 1, "AS@1": 100.0, "AS@3": 100.0, "AS@5": 100.0},
        "exception": {"faults": 1, "AS@1": 100.0, "AS@3": 100.0, "AS@5": 100.0}}


def test_pre_reference_discounts_an_anomalous_baseline(tmp_path: Path) -> None:
    """baseline/ caught c in a slow spell (40 ms where it usually takes 5): against it alone,
    c's return to normal (and a's self time, which c's spell hid) are the biggest changes. The
    minutes before the fault show c as normal as in the incident, so held against them too,
    b's own slow-down wins."""
    faults = {"09": [{"inject_time": "2023-01-29 09:10:00", "inject_pod": PODS["ts-b-service"],
                      "inject_type": "exception"}]}
    (tmp_path / "fault_list.json").write_bytes(orjson.dumps(faults))
    _write_gz(tmp_path / "baseline" / "trace" / "09_01_trace.csv.gz",
              [HEADER, *_trace_rows(T0, 120, 10.0, 1, c_ms=40.0)])
    _write_gz(tmp_path / "trace" / "09_10_trace.csv.gz",
              [HEADER, *_trace_rows(T0 + 480, 120, 10.0, 1000),
               *_trace_rows(T0 + 600, 120, 16.0, 2000)])
    alone = evaluate_nezha(tmp_path)
    held = evaluate_nezha(tmp_path, pre_reference_ns=120 * S)
    assert alone.results[0].rank != 1
    assert set(alone.results[0].top[:2]) == {"ts-a-service", "ts-c-service"}
    assert held.results[0].rank == 1
    assert "held against the 120 s before each fault" in held.baseline


def test_callers_client_latency_is_not_their_own_anomaly(tmp_path: Path) -> None:
    """c's CPU is starved; a, which calls c, sees its client-side latency jump far more (in
    units of its history's swings) than c's CPU does. That is c's time, not a's: a's client
    latency is no evidence against a, and c ranks first."""
    faults = {"09": [{"inject_time": "2023-01-29 09:20:00", "inject_pod": PODS["ts-c-service"],
                      "inject_type": "cpu_contention"}]}
    (tmp_path / "fault_list.json").write_bytes(orjson.dumps(faults))
    _write_gz(tmp_path / "baseline" / "trace" / "09_01_trace.csv.gz",
              [HEADER, *_trace_rows(T0, 60, 10.0, 1)])
    _write_gz(tmp_path / "trace" / "09_20_trace.csv.gz",
              [HEADER, *_trace_rows(T0 + 1200, 180, 10.0, 3000)])
    for svc, pod in PODS.items():
        lines = ["Time,TimeStamp,PodName,CpuUsage(m),PodClientLatencyP90(s),NodeCpuUsageRate(%)"]
        for minute in range(-60, 31):
            hot = 20 <= minute < 23
            cpu = 60.0 if hot and svc == "ts-c-service" else 10.0 + (minute % 4)
            client = 5.0 if hot and svc == "ts-a-service" else 0.01 + (minute % 2) * 0.001
            node = 90.0 if hot and svc == "ts-b-service" else 20.0 + (minute % 3)
            lines.append(f"x,{T0 + minute * 60 + 9},{pod},{cpu},{client},{node}")
        _write_gz(tmp_path / "metric" / f"{pod}_metric.csv.gz", lines)
    with Store(tmp_path / "s.duckdb") as store:
        load_directory(store, tmp_path)
        since = (T0 + 1200) * S
        ranking = rank_root_causes(store, Scope(since, since + 180 * S),
                                   Scope(T0 * S, (T0 + 60) * S))
    assert ranking.ranked[0].service == "ts-c-service"
    assert ranking.ranked[0].evidence.metric == "CpuUsage(m)"
    others = {r.service: r.evidence.metric for r in ranking.ranked}
    assert others["ts-a-service"] != "PodClientLatencyP90(s)"
    assert others["ts-b-service"] != "NodeCpuUsageRate(%)"


@pytest.mark.skipif(not NEZHA.is_dir(), reason=f"Nezha data not present at {NEZHA}")
def test_eval_nezha_real_data() -> None:
    res = CliRunner().invoke(main, ["eval", "nezha", str(NEZHA), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.output)
    assert doc["faults"] == 28
    assert set(doc["by_type"]) == {"cpu_contention", "exception", "return"}
    assert sum(t["faults"] for t in doc["by_type"].values()) == 28
    assert 0 <= doc["AS@1"] <= doc["AS@3"] <= doc["AS@5"] <= 100
    # CPU contention shows in the pod's own CPU gauge: all four are found first.
    cpu = [d for d in doc["details"] if d["type"] == "cpu_contention"]
    assert len(cpu) == 4 and all(d["rank"] == 1 for d in cpu)
