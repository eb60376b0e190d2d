"""Simulator throughput: spans generated per second, and OTLP file writing speed.

    python bench/bench_sim.py            # default 30-minute config and a 10x-rate config
    python bench/bench_sim.py --quick    # default config only
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from telltale.sim import (
    SimConfig,
    SimResult,
    simulate,
    write_broken_file,
    write_otlp_json,
    write_otlp_proto,
)

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_simulate(label: str, config: SimConfig) -> SimResult:
    result, seconds = timed(lambda: simulate(config))
    spans = result.spans.num_rows
    print(f"{label:<28} {spans:>10,} spans {result.logs.num_rows:>8,} logs "
          f"{seconds:6.2f} s  {spans / seconds:>12,.0f} spans/s")
    return result


def bench_write(label: str, result: SimResult, directory: Path) -> None:
    spans = result.spans.num_rows
    for name, write in (("OTLP JSON", write_otlp_json), ("OTLP protobuf", write_otlp_proto)):
        paths, seconds = timed(lambda w=write: w(result, directory))  # type: ignore[misc]
        size = sum(p.stat().st_size for p in paths) / 1e6
        print(f"{label + ' ' + name:<28} {size:>10,.0f} MB    {seconds:6.2f} s  "
              f"{spans / seconds:>12,.0f} spans/s  {size / seconds:7.0f} MB/s")
    _, seconds = timed(lambda: write_broken_file(result, directory / "broken.jsonl"))
    print(f"{label + ' broken file':<28} {'':>10}       {seconds:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the 10x config")
    args = parser.parse_args()
    default = SimConfig()
    with tempfile.TemporaryDirectory() as tmp:
        result = bench_simulate("simulate default (30 min)", default)
        bench_write("default", result, Path(tmp))
        del result
        if not args.quick:
            big = dataclasses.replace(default, requests_per_s=default.requests_per_s * 10)
            result = bench_simulate("simulate 10x rate", big)
            bench_write("10x", result, Path(tmp))


if __name__ == "__main__":
    main()
