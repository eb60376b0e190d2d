"""CI import: GitHub Actions (REST, gh --json, webhooks) and generic CI JSON lines → span trees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import SHARED_DATA, rows
from telltale.normalize import ci_github, ci_jsonl, ci_spans
from telltale.normalize.options import DecodeOptions
from telltale.store import Store

CI_DIR = SHARED_DATA / "ci"
requires_ci_payloads = pytest.mark.skipif(
    not CI_DIR.is_dir(), reason=f"GitHub webhook payloads not present at {CI_DIR} (optional)")

STEPS = [
    {"name": "Set up job", "status": "completed", "conclusion": "success", "number": 1,
     "started_at": "2024-05-01T10:01:00Z", "completed_at": "2024-05-01T10:01:05Z"},
    {"name": "pytest", "status": "completed", "conclusion": "failure", "number": 2,
     "started_at": "2024-05-01T10:01:05Z", "completed_at": "2024-05-01T10:04:05Z"},
]
REST_RUNS = {"total_count": 2, "workflow_runs": [
    {"id": 9001, "name": "CI", "run_attempt": 1, "run_number": 12, "event": "push",
     "status": "completed", "conclusion": "failure", "head_branch": "main", "head_sha": "abc123",
     "created_at": "2024-05-01T10:00:00Z", "run_started_at": "2024-05-01T10:00:30Z",
     "updated_at": "2024-05-01T10:05:00Z", "html_url": "https://github.com/o/r/actions/runs/9001",
     "repository": {"full_name": "o/r", "html_url": "https://github.com/o/r"}},
    {"id": 9001, "name": "CI", "run_attempt": 2, "run_number": 12, "event": "push",
     "status": "completed", "conclusion": "success", "head_branch": "main", "head_sha": "abc123",
     "created_at": "2024-05-01T11:00:00Z", "run_started_at": "2024-05-01T11:00:10Z",
     "updated_at": "2024-05-01T11:04:00Z"},
]}
REST_JOBS = {"total_count": 1, "jobs": [
    {"id": 555, "run_id": 9001, "run_attempt": 1, "workflow_name": "CI", "name": "test",
     "head_branch": "main", "head_sha": "abc123", "status": "completed", "conclusion": "failure",
     "created_at": "2024-05-01T10:00:40Z", "started_at": "2024-05-01T10:01:00Z",
     "completed_at": "2024-05-01T10:04:05Z", "runner_name": "GitHub Actions 3", "steps": STEPS},
]}
GH_VIEW = {  # gh run view 9001 --json databaseId,attempt,workflowName,...,jobs
    "databaseId": 9001, "attempt": 1, "number": 12, "workflowName": "CI", "name": "CI",
    "displayTitle": "fix the cart", "event": "push", "status": "completed",
    "conclusion": "failure", "headBranch": "main", "headSha": "abc123",
    "createdAt": "2024-05-01T10:00:00Z", "startedAt": "2024-05-01T10:00:30Z",
    "updatedAt": "2024-05-01T10:05:00Z",
    "jobs": [{"databaseId": 555, "name": "test", "status": "completed", "conclusion": "failure",
              "startedAt": "2024-05-01T10:01:00Z", "completedAt": "2024-05-01T10:04:05Z",
              "steps": [{"name": s["name"], "number": s["number"], "status": s["status"],
                         "conclusion": s["conclusion"], "startedAt": s["started_at"],
                         "completedAt": s["completed_at"]} for s in STEPS]}],
}


def _decode(doc: Any, module: Any = ci_github) -> list[dict[str, Any]]:
    data = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    out = module.decode(data, DecodeOptions())
    assert not out.rejects, out.rejects
    return [r for t in out.spans for r in t.to_pylist()]


def _attrs(row: dict[str, Any]) -> dict[str, str]:
    return dict(row["SpanAttributes"])


def test_rest_runs_and_jobs_form_one_tree_with_linked_attempts() -> None:
    runs = _decode(REST_RUNS)
    jobs = _decode(REST_JOBS)
    first, second = runs
    assert first["SpanName"] == "RUN CI" and first["SpanKind"] == "Server"
    assert _attrs(first)["cicd.pipeline.result"] == "failure" and first["StatusCode"] == "Error"
    assert _attrs(first)["cicd.pipeline.run.id"] == "9001"
    assert _attrs(first)["vcs.ref.head.revision"] == "abc123"
    assert _attrs(first)["ci.queue_time_s"] == "30.000"
    assert first["EndNs"] - first["StartNs"] == 270 * 10**9
    # attempt 2 is its own trace, linked to attempt 1's run span
    assert second["TraceId"] != first["TraceId"]
    assert [(lk["TraceId"], lk["SpanId"]) for lk in second["Links"]] == [
        (first["TraceId"], first["SpanId"])]
    job, setup, pytest_step = jobs
    assert job["TraceId"] == first["TraceId"] and job["ParentSpanId"] == first["SpanId"]
    assert _attrs(job)["cicd.pipeline.task.name"] == "test"
    assert _attrs(job)["cicd.pipeline.task.run.result"] == "failure"
    assert {setup["ParentSpanId"], pytest_step["ParentSpanId"]} == {job["SpanId"]}
    assert _attrs(pytest_step)["ci.step.name"] == "pytest" and pytest_step["StatusCode"] == "Error"


def test_gh_json_gives_the_same_ids_as_the_rest_api() -> None:
    rest = {r["SpanId"]: r for r in _decode(REST_RUNS) + _decode(REST_JOBS)}
    gh = _decode(GH_VIEW)
    assert len(gh) == 4
    for row in gh:
        same = rest[row["SpanId"]]
        assert (row["TraceId"], row["ParentSpanId"], row["StartNs"], row["EndNs"]) == (
            same["TraceId"], same["ParentSpanId"], same["StartNs"], same["EndNs"])
    assert _attrs(gh[0])["cicd.pipeline.name"] == "CI"
    assert _attrs(gh[0])["ci.run.title"] == "fix the cart"
    # gh run list --json: a list of runs
    assert len(_decode([{k: v for k, v in GH_VIEW.items() if k != "jobs"}])) == 1


def test_reimport_is_idempotent_in_the_store(tmp_path: Path) -> None:
    with Store(tmp_path / "ci.duckdb") as store:
        store.commit(ci_github.decode(orjson.dumps(REST_JOBS), DecodeOptions()), source="a",
                     fmt="github-actions", content_hash="a")
        data = orjson.dumps(GH_VIEW)
        store.commit(ci_github.decode(data, DecodeOptions()), source="b", fmt="github-actions",
                     content_hash="b")
        spans = rows(store, "SELECT DISTINCT TraceId, SpanId FROM otel_traces")
    assert len(spans) == 4  # the gh view repeats the REST job and steps: same ids


def test_unknown_document_is_rejected_not_dropped() -> None:
    out = ci_github.decode(b'{"hello": 1}\n{"workflow_runs": []}\nnot json', DecodeOptions())
    assert [r.reason.value for r in out.rejects] == ["bad_shape", "unparsable"]
    assert [r.position for r in out.rejects] == ["line 1", "line 3"]


def test_sniff() -> None:
    assert ci_spans.sniff(orjson.dumps(REST_RUNS)) == "github-actions"
    assert ci_spans.sniff(orjson.dumps(GH_VIEW)) == "github-actions"
    assert ci_spans.sniff(b'{"ci": "run", "run_id": "1"}\n') == "ci-jsonl"
    assert ci_spans.sniff(b'{"resourceSpans": []}') is None


def test_generic_jsonl_builds_the_tree() -> None:
    lines = [
        {"ci": "run", "system": "gitlab", "pipeline": "build", "run_id": 77, "result": "passed",
         "created": 1714557600, "started": 1714557610, "finished": 1714557700, "branch": "main",
         "files_changed": 3, "attributes": {"team": "core"}},
        {"ci": "job", "system": "gitlab", "pipeline": "build", "run_id": 77, "job": "test",
         "job_id": "j1", "result": "failed", "started": "2024-05-01T10:00:20Z",
         "finished": "2024-05-01T10:01:00Z"},
        {"ci": "step", "system": "gitlab", "run_id": 77, "job_id": "j1", "step": "pytest",
         "step_number": 1, "result": "failed", "started": 1714557620000,
         "finished": 1714557660000},
    ]
    run, job, step = _decode(b"\n".join(orjson.dumps(x) for x in lines), ci_jsonl)
    assert _attrs(run)["cicd.pipeline.result"] == "success" and _attrs(run)["team"] == "core"
    assert _attrs(run)["ci.queue_time_s"] == "10.000" and _attrs(run)["ci.files_changed"] == "3"
    assert job["ParentSpanId"] == run["SpanId"] and step["ParentSpanId"] == job["SpanId"]
    assert {run["TraceId"], job["TraceId"], step["TraceId"]} == {run["TraceId"]}
    assert step["StartNs"] == 1714557620 * 10**9 and job["StatusCode"] == "Error"
    bad = ci_jsonl.decode(b'{"ci": "pipeline"}\n{"ci": "job"}\n', DecodeOptions())
    assert [r.reason.value for r in bad.rejects] == ["bad_shape", "bad_shape"]


@requires_ci_payloads
def test_real_webhook_payloads_import_into_a_tree(tmp_path: Path) -> None:
    paths = sorted(CI_DIR.glob("*workflow_*.payload.json"))
    assert paths
    with Store(tmp_path / "ci.duckdb") as store:
        for path in paths:
            decoded = ci_github.decode(path.read_bytes(), DecodeOptions(source=path.name))
            assert not decoded.rejects and decoded.spans, path.name
            report = store.commit(decoded, source=path.name, fmt="github-actions",
                                  content_hash=path.name)
            assert not report.quarantined, (path.name, report)
        found = rows(store, "SELECT SpanName, ParentSpanId, Timestamp, Duration, StatusCode, "
                            "SpanAttributes AS a FROM otel_traces")
    runs = [r for r in found if r["ParentSpanId"] == ""]
    assert {r["SpanName"] for r in runs} == {"RUN " + r["a"]["cicd.pipeline.name"] for r in runs}
    assert all(r["a"]["cicd.pipeline.run.id"] == "289782451" for r in runs)
    # the failed job: started_at is 530 s after its first step; the job is widened and flagged
    failed = [r for r in found if r["a"].get("cicd.pipeline.task.run.result") == "failure"
              and "ci.step.name" not in r["a"]]
    assert len(failed) == 1
    job = failed[0]
    assert "after its first step" in job["a"]["ci.clock_adjusted"]
    assert job["a"]["ci.queue_time_s"] == "60.000" and job["StatusCode"] == "Error"
    # (the success and failure samples reuse one job id, so check the tree in one payload)
    one = _decode((CI_DIR / "octokit-webhooks_workflow_job_completed.failure.with-organization"
                            ".payload.json").read_bytes())
    job_row, steps = one[0], one[1:]
    assert steps and all(s["ParentSpanId"] == job_row["SpanId"] and
                         job_row["StartNs"] <= s["StartNs"] <= s["EndNs"] <= job_row["EndNs"]
                         for s in steps)
    # queued / in-progress jobs are kept as instants with their state
    assert {r["a"].get("cicd.pipeline.run.state") for r in found} >= {"pending", "executing"}
