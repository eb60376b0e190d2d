"""Sustained OTLP/HTTP ingest, end to end: telltale serve against Arize Phoenix.

Run: python bench/bench_serve.py [--duration 20] [--clients 6] [--no-phoenix]

Load: realistic spans (12 attributes of mixed string/int/double/bool types, events on some, one
error in twenty, 16 spans per trace with parents) in `ExportTraceServiceRequest` protobuf bodies
of 512 spans, the OpenTelemetry SDK's default batch. Bodies are serialized once from a template
and given fresh ids by patching the id bytes in place, before the clock starts; each client
process (one keep-alive connection each, `http.client`) sends its own bodies back to back for
`--duration` seconds and retries 429/503 answers after a short pause.

- telltale: a 200 means committed, so throughput = spans acknowledged with 200 per second; after
  the server stops, the store must hold exactly that many spans.
- Phoenix (in its own virtualenv, `--phoenix-venv`, created with `pip install arize-phoenix` when
  missing; `phoenix serve` on loopback, PHOENIX_WORKING_DIR in the work directory): it answers 200
  before persisting (spans are decoded in background tasks, queued in memory and written 100 per
  transaction), so what counts is the rows of its SQLite `spans` table, polled every second until
  every acknowledged span is in, the count stops growing for `--drain-idle` s, or `--drain-max` s
  after the load. Durable rate = persisted spans / seconds from the first request to the count's
  last growth; its steady drain rate (slope over the last minute of growth) is printed too.

Both servers get the same bodies, the same clients and the same duration. If Phoenix cannot be
installed or started, the reason is printed and telltale's figure alone is given.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import random
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TELLTALE = [sys.executable, "-c", "from telltale.cli import main; main()"]
PROTOBUF = "application/x-protobuf"
SPANS_PER_TRACE = 16
T_NS = 1_000_000

# -- the load ---------------------------------------------------------------------------------

_ROUTES = ["/api/orders", "/api/orders/{id}", "/api/cart", "/api/users/{id}", "/healthz",
           "/api/search", "/api/checkout", "/api/inventory/{sku}"]
_NAMES = ["GET /api/orders", "POST /api/checkout", "SELECT orders", "redis GET", "grpc.Payment/Charge",
          "render template", "kafka publish", "http.client GET", "validate cart", "compute price"]


@dataclass(frozen=True)
class Template:
    """One serialized request and where its ids sit, to stamp fresh ids into copies."""

    body: bytes
    trace_offsets: list[list[int]]  # per trace, the offsets of its 16-byte id
    span_offsets: list[int]  # per span, its 8-byte id
    parent_offsets: list[tuple[int, int]]  # (offset, index of the parent span)


def build_template(spans: int, seed: int = 1) -> Template:
    """A request of `spans` spans as an instrumented web service's SDK would export them."""
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, value in [("service.name", "checkout"), ("service.version", "2.14.1"),
                       ("service.instance.id", "checkout-7f9c6d-2xkq"), ("host.name", "node-17"),
                       ("deployment.environment", "prod"), ("telemetry.sdk.language", "python"),
                       ("telemetry.sdk.name", "opentelemetry"), ("telemetry.sdk.version", "1.27.0")]:
        rs.resource.attributes.add(key=key).value.string_value = value
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "opentelemetry.instrumentation.flask", "0.48b0"
    now = time.time_ns() - 60 * 1_000_000_000
    trace_ids: list[bytes] = []
    span_ids: list[bytes] = []
    parents: list[int] = []
    for i in range(spans):
        t = i // SPANS_PER_TRACE
        if t == len(trace_ids):
            trace_ids.append(rng.randbytes(16))
        root = t * SPANS_PER_TRACE
        span_ids.append(rng.randbytes(8))
        start = now + t * 50 * T_NS + (i - root) * 2 * T_NS
        span = ss.spans.add(trace_id=trace_ids[t], span_id=span_ids[i], name=_NAMES[i % len(_NAMES)],
                            kind=2 if i == root else rng.choice([1, 3]),
                            start_time_unix_nano=start,
                            end_time_unix_nano=start + rng.randint(1, 40) * T_NS)
        if i != root:
            span.parent_span_id = span_ids[root]
            parents.append(i)
        status_error = rng.random() < 0.05
        span.status.code = 2 if status_error else 0  # type: ignore[assignment]
        if status_error:
            span.status.message = "upstream timed out"
        route = rng.choice(_ROUTES)
        for key, value in [
            ("http.request.method", rng.choice(["GET", "POST", "PUT"])), ("http.route", route),
            ("url.path", route.replace("{id}", str(rng.randint(1, 10**6)))),
            ("http.response.status_code", 500 if status_error else 200),
            ("server.port", 8080), ("user.id", f"u-{rng.randint(1, 50000)}"),
            ("db.rows_affected", rng.randint(0, 500)),
            ("http.server.duration_ms", round(rng.uniform(0.2, 80.0), 3)),
            ("payload.ratio", rng.random()), ("cache.hit", rng.random() < 0.7),
            ("feature.new_checkout", rng.random() < 0.5), ("retry.count", rng.randint(0, 3)),
        ]:
            value_ = span.attributes.add(key=key).value
            if isinstance(value, bool):
                value_.bool_value = value
            elif isinstance(value, int):
                value_.int_value = value
            elif isinstance(value, float):
                value_.double_value = value
            else:
                value_.string_value = value
        if rng.random() < 0.1:
            event = span.events.add(name="exception", time_unix_nano=start + T_NS)
            event.attributes.add(key="exception.type").value.string_value = "TimeoutError"
    body = req.SerializeToString()
    trace_offsets = [_offsets(body, tid) for tid in trace_ids]
    span_offsets = [_offsets(body, sid)[0] for sid in span_ids]
    parent_offsets: list[tuple[int, int]] = []
    for t, tid in enumerate(trace_ids):
        del tid
        root = t * SPANS_PER_TRACE
        for off in _offsets(body, span_ids[root])[1:]:
            parent_offsets.append((off, root))
    assert len(parent_offsets) == len(parents)
    return Template(body, trace_offsets, span_offsets, parent_offsets)


def _offsets(body: bytes, needle: bytes) -> list[int]:
    out, at = [], body.find(needle)
    while at >= 0:
        out.append(at)
        at = body.find(needle, at + 1)
    assert out, "an id is missing from the serialized template"
    return out


def stamp(t: Template, client: int, n: int) -> bytes:
    """Copy n of the template for one client: every trace and span id made unique."""
    buf = bytearray(t.body)
    prefix = (client + 1).to_bytes(2, "big") + n.to_bytes(4, "big")
    for i, offsets in enumerate(t.trace_offsets):
        tid = b"\x7e" + prefix + i.to_bytes(4, "big") + b"\x00\x00\x00\x00\x01"
        for off in offsets:
            buf[off:off + 16] = tid
    ids = [prefix + (i + 1).to_bytes(2, "big") for i in range(len(t.span_offsets))]
    for off, sid in zip(t.span_offsets, ids, strict=True):
        buf[off:off + 8] = sid
    for off, parent in t.parent_offsets:
        buf[off:off + 8] = ids[parent]
    return bytes(buf)


# -- clients ----------------------------------------------------------------------------------


@dataclass
class ClientResult:
    acked_spans: int = 0
    acked_requests: int = 0
    retries: int = 0  # 429/503 answers (sent again)
    failed: int = 0  # other answers or errors
    cpu_seconds: float = 0.0
    last_ack: float = 0.0  # wall clock
    statuses: dict[int, int] | None = None


def client_main(index: int, port: int, path: str, template: Template, bodies: int,
                spans: int, ready: Any, go: EventType, stop_at: Any, out: Any) -> None:
    """One client process: stamp its bodies, wait for the start, send until the deadline."""
    payloads = [stamp(template, index, n) for n in range(bodies)]
    ready.put(index)
    go.wait()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    res = ClientResult(statuses={})
    assert res.statuses is not None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": PROTOBUF}
    n = 0
    deadline = stop_at.value
    while n < len(payloads) and time.time() < deadline:
        try:
            conn.request("POST", path, body=payloads[n], headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            status = 0
        res.statuses[status] = res.statuses.get(status, 0) + 1
        if status == 200:
            res.acked_spans += spans
            res.acked_requests += 1
            res.last_ack = time.time()
            n += 1
        elif status in (429, 503):
            res.retries += 1
            time.sleep(0.05)
        else:
            res.failed += 1
            n += 1
            time.sleep(0.05)
    conn.close()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    res.cpu_seconds = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    out.put(res)


@dataclass
class LoadResult:
    started: float
    finished: float
    clients: list[ClientResult]

    @property
    def acked_spans(self) -> int:
        return sum(c.acked_spans for c in self.clients)

    @property
    def acked_requests(self) -> int:
        return sum(c.acked_requests for c in self.clients)

    @property
    def retries(self) -> int:
        return sum(c.retries for c in self.clients)

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.clients)

    @property
    def client_cpu(self) -> float:
        return sum(c.cpu_seconds for c in self.clients)

    @property
    def elapsed(self) -> float:
        return self.finished - self.started


def run_load(port: int, path: str, template: Template, clients: int, duration: float,
             bodies_per_client: int, spans: int) -> LoadResult:
    ctx = mp.get_context("fork")
    ready, out = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    stop_at = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=client_main, args=(i, port, path, template, bodies_per_client,
                                                   spans, ready, go, stop_at, out))
             for i in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=300)
    started = time.time()
    stop_at.value = started + duration
    go.set()
    results = [out.get(timeout=duration + 600) for _ in procs]
    finished = time.time()
    for p in procs:
        p.join()
    return LoadResult(started, finished, results)


# -- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children so far (0 without psutil)."""
    try:
        import psutil
    except ImportError:
        return 0.0
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        total = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


@dataclass
class Figure:
    name: str
    persisted_spans: int
    seconds: float  # from the first request until the last span was durable
    acked_spans: int
    load: LoadResult
    note: str = ""
    server_cpu: float = 0.0  # CPU seconds the server process used over the measured span
    steady_rate: float = 0.0  # Phoenix: persisted spans/s once its writer runs (no start-up stall)


    @property
    def rate(self) -> float:
        return self.persisted_spans / self.seconds if self.seconds else 0.0


def bench_telltale(args: argparse.Namespace, template: Template, workdir: Path) -> Figure:
    db = workdir / "bench.duckdb"
    port = free_port()
    with (workdir / "telltale.log").open("wb") as log:
        proc = subprocess.Popen([*TELLTALE, "--db", str(db), "serve", "--no-ui", "--host", "127.0.0.1",
                                 "--port", str(port), "--no-grpc"], stdout=log, stderr=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, 120)
        cpu0 = cpu_seconds(proc.pid)
        load = run_load(port, "/v1/traces", template, args.clients, args.duration,
                        args.bodies_per_client, args.spans)
        server_cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        code = stop(proc)
    from telltale.store import Store

    with Store(db, read_only=True) as store:
        stored = int(store.query("SELECT count(*) FROM otel_traces")[0][0])
    on_disk = sum(f.stat().st_size for f in (db, db.with_name(db.name + ".wal")) if f.exists())
    note = f"store holds {stored} spans" + ("" if stored == load.acked_spans else
                                            f" but {load.acked_spans} were acknowledged: MISMATCH")
    note += f", {on_disk / max(stored, 1):.0f} B/span on disk"
    if code != 0:
        note += f"; exit code after SIGTERM {code}"
    last_ack = max((c.last_ack for c in load.clients), default=load.started)
    # A 200 is a durable commit: spans acknowledged per second of load.
    return Figure("telltale", load.acked_spans, max(last_ack, load.started + 1e-9) - load.started,
                  load.acked_spans, load, note, server_cpu)


def phoenix_executable(venv: Path, install: bool) -> tuple[Path | None, str]:
    exe = venv / "bin" / "phoenix"
    if exe.exists():
        return exe, ""
    if not install:
        return None, f"{exe} not found (and --no-install)"
    print(f"installing arize-phoenix into {venv} (python -m venv + pip install arize-phoenix) ...",
          flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "arize-phoenix"],
                       check=True, capture_output=True, timeout=1800)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return None, f"pip install arize-phoenix failed: {exc} {detail.decode(errors='replace')[-500:]}"
    return (exe, "") if exe.exists() else (None, "arize-phoenix installed no `phoenix` command")


def _count_spans(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("SELECT count(*) FROM spans").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return -1


def bench_phoenix(args: argparse.Namespace, template: Template, workdir: Path) -> Figure | str:
    exe, why = phoenix_executable(Path(args.phoenix_venv), not args.no_install)
    if exe is None:
        return why
    home = workdir / "phoenix"
    home.mkdir()
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(home), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_PORT": str(args.phoenix_port), "PHOENIX_GRPC_PORT": str(free_port()),
           "PHOENIX_TELEMETRY_ENABLED": "false",
           # No outbound fetches at start-up (docs MCP server, WASM sandbox binary): loopback only.
           "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false", "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
           "PHOENIX_ALLOWED_SANDBOX_PROVIDERS": "NONE", "PHOENIX_ENABLE_MCP_SERVER": "false"}
    with (workdir / "phoenix.log").open("wb") as log:
        proc = subprocess.Popen([str(exe), "serve"], env=env, stdout=log, stderr=log,
                                start_new_session=True)
    db = home / "phoenix.db"
    try:
        try:
            wait_http(f"http://127.0.0.1:{args.phoenix_port}/healthz", proc, 180)
        except RuntimeError as exc:
            tail = (workdir / "phoenix.log").read_text(errors="replace")[-800:]
            return f"phoenix serve did not start: {exc}\n{tail}"
        cpu0 = cpu_seconds(proc.pid)
        load = run_load(args.phoenix_port, "/v1/traces", template, args.clients, args.duration,
                        args.bodies_per_client, args.spans)
        # Phoenix answers before it writes: follow its database until every acknowledged span is
        # in, or it stops growing, or the drain window ends.
        samples = [(time.time(), _count_spans(db))]
        last_change = samples[0][0]
        while samples[-1][1] < load.acked_spans:
            now = time.time()
            if now - last_change > args.drain_idle or now - load.finished > args.drain_max:
                break
            time.sleep(1.0)
            samples.append((time.time(), _count_spans(db)))
            if samples[-1][1] != samples[-2][1]:
                last_change = samples[-1][0]
        server_cpu = cpu_seconds(proc.pid) - cpu0
        persisted = max(samples[-1][1], 0)
        # Steady rate: the slope over the last (up to) 60 s of growth, past the start-up stall.
        window = [(t, c) for t, c in samples if last_change - 60 <= t <= last_change]
        steady = ((window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
                  if len(window) > 1 and window[-1][0] > window[0][0] else 0.0)
        pending = load.acked_spans - persisted
        note = (f"answered 200 for {load.acked_spans:,} spans before persisting them; "
                f"{persisted:,} persisted "
                + (f"({pending:,} still queued when the {args.drain_max:.0f} s drain window ended); "
                   if pending > 0 else "(all); ")
                + f"steady rate while draining {steady:,.0f} spans/s")
        return Figure("phoenix", persisted, last_change - load.started, load.acked_spans, load, note,
                      server_cpu, steady)
    finally:
        stop(proc, signal.SIGINT)


def show(f: Figure) -> str:
    load = f.load
    per_cpu = (f"{f.persisted_spans / f.server_cpu:,.0f} spans per server CPU-second"
               if f.server_cpu else "no CPU figure")
    return (f"{f.name:9s} {f.rate:10,.0f} spans/s durable   ({f.persisted_spans:,} spans in "
            f"{f.seconds:.1f} s; acked {f.acked_spans:,} in {load.acked_requests:,} requests, "
            f"{load.retries:,} 429/503 retried, {load.failed} failed)\n"
            f"          server CPU {f.server_cpu:.1f} s ({per_cpu}), client CPU "
            f"{load.client_cpu:.2f} s; {f.note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load per server")
    ap.add_argument("--clients", type=int, default=6, help="client processes (one connection each)")
    ap.add_argument("--spans", type=int, default=512, help="spans per request (SDK default batch)")
    ap.add_argument("--bodies-per-client", type=int, default=400,
                    help="distinct pre-serialized bodies per client (the run ends early if used up)")
    ap.add_argument("--no-phoenix", action="store_true", help="measure telltale only")
    ap.add_argument("--phoenix-venv", default="/tmp/phoenix-venv")
    ap.add_argument("--no-install", action="store_true", help="do not pip install arize-phoenix")
    ap.add_argument("--phoenix-port", type=int, default=6006)
    ap.add_argument("--drain-idle", type=float, default=60.0,
                    help="Phoenix: stop waiting once its span count has not grown for this long")
    ap.add_argument("--drain-max", type=float, default=240.0,
                    help="Phoenix: seconds after the load to keep counting persisted spans")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep stores and server logs here (default: a temporary directory)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    template = build_template(args.spans)
    print(f"{args.clients} clients x {args.duration:.0f} s, {args.spans} spans/request "
          f"({len(template.body) / args.spans:.0f} B/span protobuf), {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="telltale-bench-serve-")))
        else:
            work = args.workdir
            work.mkdir(parents=True, exist_ok=False)
        tt = bench_telltale(args, template, work)
        print(show(tt), flush=True)
        ph: Figure | str = "skipped (--no-phoenix)" if args.no_phoenix else bench_phoenix(
            args, template, work)
        if isinstance(ph, Figure):
            print(show(ph))
            if ph.rate:
                print(f"ratio     telltale / phoenix = {tt.rate / ph.rate:,.1f}x durable spans/s", end="")
                if ph.steady_rate:
                    print(f" ({tt.rate / ph.steady_rate:,.1f}x its steady drain rate)", end="")
                if tt.server_cpu and ph.server_cpu and ph.persisted_spans:
                    per = (tt.persisted_spans / tt.server_cpu) / (ph.persisted_spans / ph.server_cpu)
                    print(f", {per:,.1f}x spans per server CPU-second", end="")
                print()
            else:
                print("ratio     phoenix persisted nothing")
        else:
            print(f"phoenix   not measured: {ph}")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        if args.json:
            print(json.dumps({"telltale_spans_per_s": tt.rate, "telltale_note": tt.note,
                              "phoenix_spans_per_s": ph.rate if isinstance(ph, Figure) else None,
                              "phoenix_steady_spans_per_s": ph.steady_rate if isinstance(ph, Figure)
                              else None,
                              "phoenix_note": ph.note if isinstance(ph, Figure) else ph}))


if __name__ == "__main__":
    main()
