"""Cost per event of telltale.recorder beside the OpenTelemetry SDK's cost per span, same run.

    python bench/bench_recorder.py            # 100 000 events / spans each
    python bench/bench_recorder.py -n 20000

Amortised µs = wall time / count (flushes included); max = the slowest single call (a flush or
a rotation lands on some call). The OTel rows: a bare TracerProvider (no processor), and a
BatchSpanProcessor with an in-memory exporter (so export cost is the SDK's, not a network's).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from telltale import recorder
from telltale.recorder import read_status


def measure(label: str, n: int, call: Callable[[int], object], finish: Callable[[], int]) -> None:
    gc.collect()
    worst = 0
    clock = time.perf_counter_ns
    start = clock()
    for i in range(n):
        t0 = clock()
        call(i)
        dt = clock() - t0
        if dt > worst:
            worst = dt
    kept = finish()
    total = clock() - start
    # The per-call clock reads add ~0.1 µs; they are in every row alike.
    print(f"{label:<46} {total / n / 1e3:8.2f} µs/event  max {worst / 1e3:9.1f} µs  "
          f"kept {kept}/{n}")


def bench_recorder(n: int, spool: Path) -> None:
    recorder.configure(spool / "events", max_records=100_000)
    measure("telltale.recorder.record", n, lambda i: recorder.record("spawn", model="m", i=i),
            lambda: (recorder.close(), read_status(spool / "events").written)[1])
    recorder.configure(spool / "spans", max_records=100_000)

    def one_span(i: int) -> None:
        with recorder.span("work", model="m", i=i):
            pass

    measure("telltale.recorder.span (context manager)", n, one_span,
            lambda: (recorder.close(), read_status(spool / "spans").written)[1])


def bench_otel(n: int) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    bare = TracerProvider().get_tracer("bench")

    def bare_span(i: int) -> None:
        with bare.start_as_current_span("work", attributes={"model": "m", "i": i}):
            pass

    measure("OTel SDK span, bare TracerProvider", n, bare_span, lambda: n)
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

    measure("OTel SDK span, BatchSpanProcessor + in-memory", n, batch_span, finish)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_recorder(args.n, Path(tmp))
    bench_otel(args.n)


if __name__ == "__main__":
    main()
