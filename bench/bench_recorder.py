"""Cost per event of telltale.recorder beside the OpenTelemetry SDK's cost per span, same run.

    python bench/bench_recorder.py            # 100 000 events / spans each, 3 rounds
    python bench/bench_recorder.py -n 20000 -r 5
    python bench/bench_recorder.py --no-otel  # the recorder rows only

Amortised µs = wall time / count, flushes and the final close included (so the writer thread's
work is in it); max = the slowest single call, `>1ms` how many calls took longer than 1 ms.
Each figure is given as min / median over the rounds (the rounds interleave the rows, so a
busy moment of a shared machine hits all of them). The first row times an empty function
through the same loop: its max and `>1ms` are this machine's own noise (preemption by other
processes), the floor under every other row. B/entry = the spool's bytes on disk (segment
headers included) / entries. The OTel rows: a bare TracerProvider (no processor), and a
BatchSpanProcessor with an in-memory exporter (so export cost is the SDK's, not a network's).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telltale import recorder
from telltale.recorder import read_status


@dataclass
class Row:
    label: str
    amortised_us: list[float] = field(default_factory=list)
    max_us: list[float] = field(default_factory=list)
    over_1ms: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    bytes_per_entry: list[float] = field(default_factory=list)

    def print(self, n: int) -> None:
        def span(values: list[float], fmt: str) -> str:
            return f"{fmt.format(min(values))} / {fmt.format(statistics.median(values))}"

        disk = f"  {span(self.bytes_per_entry, '{:.0f}')} B/entry" if self.bytes_per_entry else ""
        slow = span([float(x) for x in self.over_1ms], "{:.0f}")
        print(f"{self.label:<46} {span(self.amortised_us, '{:5.2f}')} µs/event"
              f"  max {span(self.max_us, '{:6.0f}')} µs  >1ms {slow}  kept {min(self.kept)}/{n}{disk}")


def measure(row: Row, n: int, call: Callable[[int], object], finish: Callable[[], int]) -> None:
    gc.collect()
    worst = slow = 0
    clock = time.perf_counter_ns
    start = clock()
    for i in range(n):
        t0 = clock()
        call(i)
        dt = clock() - t0
        if dt > worst:
            worst = dt
        if dt > 1_000_000:
            slow += 1
    kept = finish()
    total = clock() - start
    # The per-call clock reads add ~0.1 µs; they are in every row alike.
    row.amortised_us.append(total / n / 1e3)
    row.max_us.append(worst / 1e3)
    row.over_1ms.append(slow)
    row.kept.append(kept)


def _noop(name: str, /, **attrs: Any) -> str:
    return name


def bench_baseline(row: Row, n: int) -> None:
    measure(row, n, lambda i: _noop("spawn", model="m", i=i), lambda: n)


def bench_record(row: Row, n: int, spool: Path) -> None:
    recorder.configure(spool, max_records=100_000)
    measure(row, n, lambda i: recorder.record("spawn", model="m", i=i),
            lambda: (recorder.close(), read_status(spool).written)[1])
    row.bytes_per_entry.append(sum(p.stat().st_size for p in spool.glob("seg-*.jsonl")) / n)


def bench_span(row: Row, n: int, spool: Path) -> None:
    recorder.configure(spool, max_records=100_000)

    def one_span(i: int) -> None:
        with recorder.span("work", model="m", i=i):
            pass

    measure(row, n, one_span, lambda: (recorder.close(), read_status(spool).written)[1])
    row.bytes_per_entry.append(sum(p.stat().st_size for p in spool.glob("seg-*.jsonl")) / n)


def bench_otel_bare(row: Row, n: int) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    bare = TracerProvider().get_tracer("bench")

    def bare_span(i: int) -> None:
        with bare.start_as_current_span("work", attributes={"model": "m", "i": i}):
            pass

    measure(row, n, bare_span, lambda: n)


def bench_otel_batch(row: Row, n: int) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    batched = provider.get_tracer("bench")

    def batch_span(i: int) -> None:
        with batched.start_as_current_span("work", attributes={"model": "m", "i": i}):
            pass

    def finish() -> int:
        provider.force_flush()
        kept = len(exporter.get_finished_spans())
        provider.shutdown()
        return kept

    measure(row, n, batch_span, finish)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument("--no-otel", action="store_true")
    args = parser.parse_args()
    n = args.n
    rows = [Row("no-op call (this machine's noise floor)"), Row("telltale.recorder.record"),
            Row("telltale.recorder.span (context manager)")]
    if not args.no_otel:
        rows += [Row("OTel SDK span, bare TracerProvider"),
                 Row("OTel SDK span, BatchSpanProcessor + in-memory")]
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            bench_baseline(rows[0], n)
            bench_record(rows[1], n, Path(tmp) / f"events-{r}")
            bench_span(rows[2], n, Path(tmp) / f"spans-{r}")
        if not args.no_otel:
            bench_otel_bare(rows[3], n)
            bench_otel_batch(rows[4], n)
    print(f"{n} calls per row, {args.rounds} rounds; figures are min / median")
    for row in rows:
        row.print(n)


if __name__ == "__main__":
    main()
