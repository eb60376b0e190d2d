"""Crash test for `telltale serve`: an acknowledged span is never lost, whatever the moment of a kill.

Run: python bench/crash_test.py [--iterations 20] [--clients 4] [--spans 20] [--seed 1]

Starts `telltale serve` on a temporary store; N client threads send OTLP/HTTP protobuf trace
requests, each with its own span ids, and record which requests were answered 200 (the receiver's
promise: 200 means committed). The server is killed with SIGKILL at a random moment and
restarted, `--iterations` times; then it is stopped with SIGTERM and the store is read. Every span
of every acknowledged request must be in `otel_traces`; spans of unacknowledged requests (errors,
timeouts, 429/503) may be missing, and how many of those made it anyway is reported. Exits 1 when
an acknowledged span is missing (or stored twice).

SIGKILL ends the process, not the machine: what this shows is that an acknowledgement is given only
after the commit reached the database file (and its WAL), not that it survives a power cut.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telltale.store import Store

TELLTALE = [sys.executable, "-c", "from telltale.cli import main; main()"]
PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class CrashConfig:
    iterations: int = 20
    clients: int = 4
    spans_per_request: int = 20
    min_run: float = 0.3  # seconds the server runs before a kill, drawn uniformly
    max_run: float = 2.5
    seed: int = 1
    db: Path | None = None  # default: a temporary directory, removed afterwards
    verbose: bool = True


@dataclass
class Sent:
    """One request: its span ids and what the client saw (HTTP status, or 0 for no answer)."""

    span_ids: list[str]
    status: int = 0


@dataclass
class CrashResult:
    iterations: int
    requests: int
    acked_requests: int
    acked_spans: int
    lost_acked_spans: int
    duplicate_spans: int
    unacked_requests: int
    unacked_spans: int
    unacked_spans_stored: int
    unacked_requests_stored_whole: int
    statuses: dict[int, int] = field(default_factory=dict)
    final_exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.lost_acked_spans == 0 and self.duplicate_spans == 0 and self.acked_requests > 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`telltale serve` on a fixed loopback port, restartable after a kill."""

    def __init__(self, db: Path, port: int, log: Path) -> None:
        self.db = db
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> float:
        """Start and wait until /readyz answers; returns the seconds it took (WAL replay
        included)."""
        started = time.perf_counter()
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [*TELLTALE, "--db", str(self.db), "serve", "--no-ui", "--host", "127.0.0.1",
                 "--port", str(self.port), "--no-grpc"],
                stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"telltale serve exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"telltale serve not ready after {timeout} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL after `timeout`)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


class Client(threading.Thread):
    """Sends trace requests one after another until told to stop; each request is sent once."""

    def __init__(self, index: int, url: str, spans_per_request: int, stop: threading.Event,
                 seed: int) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        self.index = index
        self.url = url
        self.spans_per_request = spans_per_request
        self.stop_event = stop
        self.rng = random.Random(seed * 1000 + index)
        self.sent: list[Sent] = []

    def body(self, n: int) -> tuple[bytes, list[str]]:
        """Request n of this client: span ids are (client, request, span) packed in 8 bytes."""
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        kv = rs.resource.attributes.add(key="service.name")
        kv.value.string_value = f"crash-client-{self.index}"
        ss = rs.scope_spans.add()
        ss.scope.name = "crash_test"
        trace_id = self.rng.randbytes(15) + b"\x01"
        now = time.time_ns()
        ids = []
        for i in range(self.spans_per_request):
            span_id = ((self.index + 1) << 48 | n << 16 | i + 1).to_bytes(8, "big")
            ids.append(span_id.hex())
            span = ss.spans.add(trace_id=trace_id, span_id=span_id, name=f"op-{i % 7}",
                                kind=2, start_time_unix_nano=now + i * 1000,
                                end_time_unix_nano=now + i * 1000 + 500_000)
            if i:
                span.parent_span_id = ((self.index + 1) << 48 | n << 16 | 1).to_bytes(8, "big")
            attr = span.attributes.add(key="request.n")
            attr.value.int_value = n
        return req.SerializeToString(), ids

    def run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(30, connect=2)) as http:
            n = 0
            while not self.stop_event.is_set():
                body, ids = self.body(n)
                n += 1
                sent = Sent(ids)
                while True:
                    try:
                        resp = http.post(f"{self.url}/v1/traces", content=body,
                                         headers={"Content-Type": PROTOBUF})
                        sent.status = resp.status_code
                    except (httpx.ConnectError, httpx.ConnectTimeout):
                        # Never reached the server (it is down): send the same request again.
                        if not self.stop_event.is_set():
                            time.sleep(0.05)
                            continue
                    except httpx.HTTPError:
                        sent.status = 0  # sent, no answer: it may or may not have been committed
                    break
                self.sent.append(sent)
                if sent.status not in (0, 200):
                    time.sleep(0.02)  # 429/503: back off a little


def _stored_span_ids(db: Path) -> tuple[set[str], int]:
    with Store(db, read_only=True) as store:
        rows = store.query("SELECT SpanId, count(*) FROM otel_traces GROUP BY SpanId")
    return {r[0] for r in rows}, sum(int(r[1]) - 1 for r in rows if int(r[1]) > 1)


def run(cfg: CrashConfig) -> CrashResult:
    rng = random.Random(cfg.seed)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if cfg.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="telltale-crash-")
        db = Path(tmp.name) / "crash.duckdb"
    else:
        db = cfg.db
    say = print if cfg.verbose else (lambda *a, **k: None)
    try:
        server = ServerProcess(db, free_port(), db.with_name(db.name + ".serve.log"))
        stop = threading.Event()
        clients = [Client(i, server.url, cfg.spans_per_request, stop, cfg.seed)
                   for i in range(cfg.clients)]
        try:
            ready = server.start()
            for c in clients:
                c.start()
            for it in range(cfg.iterations):
                run_for = rng.uniform(cfg.min_run, cfg.max_run)
                time.sleep(run_for)
                before = sum(len(c.sent) for c in clients)
                server.kill()
                say(f"iteration {it + 1}/{cfg.iterations}: killed after {run_for:.2f} s "
                    f"(ready in {ready:.2f} s), {before} requests so far")
                time.sleep(rng.uniform(0, 0.2))  # clients meet a dead port for a moment
                ready = server.start()
            time.sleep(rng.uniform(cfg.min_run, cfg.max_run))
            stop.set()
            for c in clients:
                c.join(timeout=60)
            exit_code = server.terminate()
        finally:
            stop.set()
            server.kill()
        stored, duplicates = _stored_span_ids(db)
        sent = [s for c in clients for s in c.sent]
        statuses: dict[int, int] = {}
        for s in sent:
            statuses[s.status] = statuses.get(s.status, 0) + 1
        acked = [s for s in sent if s.status == 200]
        unacked = [s for s in sent if s.status != 200]
        lost = sum(1 for s in acked for i in s.span_ids if i not in stored)
        unacked_stored = sum(1 for s in unacked for i in s.span_ids if i in stored)
        whole = sum(1 for s in unacked if all(i in stored for i in s.span_ids))
        partial = sum(1 for s in unacked if 0 < sum(i in stored for i in s.span_ids) < len(s.span_ids))
        if partial:  # a request is one transaction: half of one stored is a loss of atomicity
            say(f"WARNING: {partial} unacknowledged request(s) stored in part")
        return CrashResult(
            iterations=cfg.iterations, requests=len(sent), acked_requests=len(acked),
            acked_spans=sum(len(s.span_ids) for s in acked), lost_acked_spans=lost,
            duplicate_spans=duplicates, unacked_requests=len(unacked),
            unacked_spans=sum(len(s.span_ids) for s in unacked),
            unacked_spans_stored=unacked_stored, unacked_requests_stored_whole=whole,
            statuses=statuses, final_exit_code=exit_code)
    finally:
        if tmp is not None:
            tmp.cleanup()


def report(r: CrashResult) -> str:
    codes = ", ".join(f"{'no answer' if k == 0 else k}: {v}" for k, v in sorted(r.statuses.items()))
    return "\n".join([
        f"iterations (SIGKILL + restart)     {r.iterations}",
        f"requests sent                      {r.requests}  ({codes})",
        f"acknowledged (200) requests/spans  {r.acked_requests} / {r.acked_spans}",
        f"lost acknowledged spans            {r.lost_acked_spans}  (must be 0)",
        f"spans stored twice                 {r.duplicate_spans}  (must be 0)",
        f"unacknowledged requests/spans      {r.unacked_requests} / {r.unacked_spans}",
        f"  ... spans stored anyway          {r.unacked_spans_stored} "
        f"({r.unacked_requests_stored_whole} whole requests: committed, then killed before the reply)",
        f"final SIGTERM exit code            {r.final_exit_code}",
        "RESULT: " + ("OK" if r.ok else "FAILED"),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--spans", type=int, default=20, help="spans per request")
    ap.add_argument("--min-run", type=float, default=0.3)
    ap.add_argument("--max-run", type=float, default=2.5)
    ap.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(2), "big"))
    ap.add_argument("--db", type=Path, default=None, help="keep the store here (default: temporary)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    cfg = CrashConfig(iterations=args.iterations, clients=args.clients, spans_per_request=args.spans,
                      min_run=args.min_run, max_run=args.max_run, seed=args.seed, db=args.db,
                      verbose=not args.json)
    if not args.json:
        print(f"seed {cfg.seed}")
    result = run(cfg)
    if args.json:
        print(json.dumps({**result.__dict__, "ok": result.ok}))
    else:
        print(report(result))
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
