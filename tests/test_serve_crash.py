"""`telltale serve` killed with SIGKILL under load loses no acknowledged span (bench/crash_test.py,
three kills instead of twenty)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _crash_test() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_test", ROOT / "bench" / "crash_test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["crash_test"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_no_acknowledged_span_is_lost_across_kills(tmp_path: Path) -> None:
    crash = _crash_test()
    result = crash.run(crash.CrashConfig(iterations=3, clients=3, spans_per_request=10,
                                         min_run=0.5, max_run=1.5, seed=7,
                                         db=tmp_path / "crash.duckdb", verbose=False))
    summary = crash.report(result)
    assert result.acked_requests > 0, summary
    assert result.lost_acked_spans == 0, summary
    assert result.duplicate_spans == 0, summary
