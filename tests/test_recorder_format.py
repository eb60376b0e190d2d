"""The recorder's compact spool format and its writer thread: what lands on disk, and when."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from telltale import recorder
from telltale.normalize.recorder import entries
from telltale.normalize.staging import Reject
from telltale.recorder import flusher


def _read(path: Path) -> list[dict[str, Any]]:
    rejects: list[Reject] = []
    rows = [record for _, _, record in entries(path.read_bytes(), rejects)]
    assert rejects == []
    return rows


def _all(spool: Path, pattern: str = "seg-*.jsonl") -> list[dict[str, Any]]:
    return [row for p in sorted(spool.glob(pattern)) for row in _read(p)]


def test_typical_lines_are_compact_and_complete(tmp_path: Path) -> None:
    recorder.configure(tmp_path, service="orchestrator")
    wid = recorder.record("agent.spawn", model="claude-sonnet-4-5", role="worker")
    with recorder.span("build", target="all") as build, recorder.span("compile") as step:
        step.outcome = "timeout"
    recorder.update(wid, outcome="success", tokens=1200)
    recorder.close()
    (segment,) = tmp_path.glob("seg-*.jsonl")
    header, *lines = segment.read_bytes().splitlines()
    assert header.startswith(b'{"telltale.recorder":1,"kind":"segment"')
    spans = [line for line in lines if line.startswith(b'["s",')]
    assert len(spans) == 2 and max(map(len, spans)) <= 80  # the goal for typical spans (issue 7)
    rows = {r["name"] if r["kind"] != "update" else "update": r for r in _read(segment)}
    spawn, outer, inner = rows["agent.spawn"], rows["build"], rows["compile"]
    assert spawn["id"] == wid and len(wid) == 16 and spawn["service"] == "orchestrator"
    assert spawn["trace"] == "0" * 16 + wid and spawn["parent"] == ""
    assert spawn["attrs"] == {"model": "claude-sonnet-4-5", "role": "worker"}
    assert outer["id"] == build.id and inner["parent"] == build.id
    assert inner["trace"] == outer["trace"] == "0" * 16 + build.id
    assert (inner["status"], inner["outcome"]) == ("error", "timeout") and outer["status"] == "ok"
    assert outer["start"] <= inner["start"] <= inner["end"] <= outer["end"]
    assert abs(spawn["start"] - time.time_ns()) < 60e9  # absolute Unix ns again, not offsets
    assert rows["update"] == {"kind": "update", "id": wid, "time": rows["update"]["time"],
                              "attrs": {"tokens": 1200}, "outcome": "success", "status": "ok"}


def test_three_levels_and_an_exception(tmp_path: Path) -> None:
    recorder.configure(tmp_path)
    with pytest.raises(KeyError), recorder.span("a") as a, recorder.span("b") as b:
        with recorder.span("c") as c:
            recorder.record("in-c")
        raise KeyError("boom")
    recorder.close()
    rows = {r["name"]: r for r in _all(tmp_path)}
    trace = "0" * 16 + a.id
    assert {n: (rows[n]["trace"], rows[n]["parent"]) for n in "abc"} == {
        "a": (trace, ""), "b": (trace, a.id), "c": (trace, b.id)}
    assert rows["in-c"]["parent"] == c.id and rows["in-c"]["trace"] == trace
    assert rows["b"]["status"] == "error" and rows["b"]["error.type"] == "KeyError"
    assert rows["c"]["status"] == "ok" and "error.type" not in rows["c"]


def test_span_as_a_decorator(tmp_path: Path) -> None:
    recorder.configure(tmp_path)

    @recorder.span("step", kind="unit")
    def step(n: int) -> int:
        if n < 0:
            raise ValueError(n)
        return n * 2

    with recorder.span("outer") as outer:
        assert step(2) == 4
        with pytest.raises(ValueError):
            step(-1)
    recorder.close()
    steps = [r for r in _all(tmp_path) if r["name"] == "step"]
    assert [(r["status"], r["parent"], r["attrs"]) for r in steps] == [
        ("ok", outer.id, {"kind": "unit"}), ("error", outer.id, {"kind": "unit"})]
    assert steps[0]["id"] != steps[1]["id"]


def test_a_child_forked_inside_spans_links_to_them(tmp_path: Path) -> None:
    recorder.configure(tmp_path)
    with recorder.span("a") as a:
        with recorder.span("b") as b:
            pid = os.fork()
            if pid == 0:
                try:
                    recorder.record("in-b")
                except BaseException:
                    os._exit(1)
        if pid == 0:
            try:
                recorder.record("in-a")
                recorder.close()
            finally:
                os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    recorder.close()
    rows = _all(tmp_path)
    events = {r["name"]: r for r in rows if r["kind"] == "event"}
    assert events["in-b"]["parent"] == b.id and events["in-a"]["parent"] == a.id
    assert events["in-b"]["trace"] == events["in-a"]["trace"] == "0" * 16 + a.id
    assert events["in-a"]["id"][:8] != a.id[:8]  # the child's ids have their own prefix
    # `b` also ended in the child, which wrote it under the parent's id (as the parent did).
    assert [(r["id"], r["parent"]) for r in rows if r["name"] == "b"] == [(b.id, a.id)] * 2


@pytest.mark.parametrize("settings", [{"flush_lines": 1}, {"flush_seconds": 0}])
def test_crash_safe_settings_write_before_the_call_returns(tmp_path: Path,
                                                           settings: dict[str, Any]) -> None:
    recorder.configure(tmp_path, **settings)
    recorder.record("first")
    (part,) = tmp_path.glob(".seg-*.part")
    assert [r["name"] for r in _read(part)] == ["first"]  # no flush, no close
    recorder.close()


def test_the_writer_thread_writes_after_flush_seconds(tmp_path: Path) -> None:
    recorder.configure(tmp_path, flush_seconds=0.05)
    recorder.record("lonely")
    deadline = time.monotonic() + 30  # not a timing test: only that it happens without a flush
    while time.monotonic() < deadline and not list(tmp_path.glob(".seg-*.part")):
        time.sleep(0.01)
    (part,) = tmp_path.glob(".seg-*.part")
    while time.monotonic() < deadline and not _read(part):
        time.sleep(0.01)
    assert [r["name"] for r in _read(part)] == ["lonely"]
    recorder.close()


def test_a_starved_writer_thread_bounds_memory_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder.configure(tmp_path, flush_seconds=3600, max_records=5000)
    state = recorder._flusher
    monkeypatch.setattr(state.wake, "set", lambda: None)  # the thread never gets to run
    most_pending = most_encoded = 0
    for i in range(40_000):
        recorder.record("ev", i=i)
        most_pending = max(most_pending, len(state.pending))
        most_encoded = max(most_encoded, state.encoded_lines)
    # Callers encoded rows (and wrote them when they piled up) instead of letting them grow.
    bound = (flusher.BLOCK_AFTER + 1) * flusher.CHUNK
    assert most_pending <= bound and most_encoded <= bound
    monkeypatch.undo()
    recorder.close()
    assert [r["attrs"]["i"] for r in _all(tmp_path)] == list(range(40_000))  # in order, none lost
    assert recorder.read_status(tmp_path).written == 40_000


def test_configure_again_sends_what_was_recorded_to_the_first_spool(tmp_path: Path) -> None:
    recorder.configure(tmp_path / "one", service="first")
    recorder.record("x")
    recorder.configure(tmp_path / "two", service="second")
    recorder.record("y")
    recorder.close()
    assert [(r["name"], r["service"]) for r in _all(tmp_path / "one")] == [("x", "first")]
    assert [(r["name"], r["service"]) for r in _all(tmp_path / "two")] == [("y", "second")]
