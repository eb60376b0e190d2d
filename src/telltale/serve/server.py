"""`telltale serve`: the store's one writing process, with OTLP/HTTP and OTLP/gRPC receivers
and the web dashboard (pages, JSON API, Jaeger API) on a port of its own.

Start-up opens the store, starts the committer, binds the ports, and records the address
beside the database (`<db>.serve.json`) so other telltale commands can go through this process
instead of failing on DuckDB's one-writer lock. SIGTERM / SIGINT stop accepting (uvicorn and
gRPC), let in-flight requests finish, commit everything queued, remove the address file and
exit 0. With `--no-receiver` only the dashboard runs, over the store opened read-only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import uvicorn
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from telltale.serve.committer import ByteBudget, Committer
from telltale.serve.grpc_server import start_grpc
from telltale.serve.http import build_app
from telltale.serve.receiver import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_QUEUE_BYTES, Receiver
from telltale.serve.remote import address_file, remote_routes
from telltale.serve.spool_watch import SpoolWatcher
from telltale.serve.stats import ReceiverStats
from telltale.settings import Settings
from telltale.store import Store

log = logging.getLogger("telltale.serve")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 4318
    grpc_port: int = 4317
    token: str | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    grpc: bool = True
    spool: Path | None = None  # a telltale.recorder spool to ingest as segments finish
    receiver: bool = True  # OTLP receivers and the committer (off: dashboard only, read-only)
    ui: bool = True
    ui_port: int = 8080


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _ByPort:
    """One uvicorn server listens on the receiver's and the dashboard's sockets; each request
    goes to the app of the port it arrived on (the receiver never serves pages, and the
    dashboard never accepts writes)."""

    def __init__(self, apps: dict[int, ASGIApp]) -> None:
        self.apps = apps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        app = self.apps.get(server[1]) if server else None
        if app is None:  # not reachable through a bound socket; answer rather than hang
            await PlainTextResponse("no such port", status_code=404)(scope, receive, send)
            return
        await app(scope, receive, send)


class _Server(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM/SIGINT after its own shutdown, which would kill the
    process before gRPC is stopped and the queue drained; here the signal only starts the
    shutdown, and `run` finishes it and returns 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def effective(options: ServeOptions) -> tuple[ServeOptions, list[str]]:
    """A body larger than the whole queue budget could never be accepted, and answering it
    "retry later" would make clients retry forever: cap the request size at the budget."""
    if options.max_request_bytes <= options.queue_bytes:
        return options, []
    return (replace(options, max_request_bytes=options.queue_bytes),
            [f"--max-request-bytes lowered to --queue-bytes ({options.queue_bytes}): a larger "
             "request could never fit in the queue"])


def warnings_for(options: ServeOptions) -> list[str]:
    if not is_loopback(options.host) and not options.token:
        return [f"binding {options.host} without a token: anyone who can reach this address can "
                "write to and read from the store (set --token or TELLTALE_TOKEN)"]
    return []


def run(settings: Settings, options: ServeOptions) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 after a clean drain)."""
    options, notes = effective(options)
    for warning in [*notes, *warnings_for(options)]:
        log.warning(warning)
    if not options.receiver and not options.ui:
        raise ValueError("nothing to serve: --no-receiver and --no-ui together")
    store = Store(settings.db_path, settings=settings, read_only=not options.receiver)
    store.share()
    host = f"[{options.host}]" if ":" in options.host else options.host
    apps: dict[int, ASGIApp] = {}
    sockets: list[socket.socket] = []
    address: dict[str, object] = {"pid": os.getpid(), "db": str(settings.db_path.resolve()),
                                  "token_required": bool(options.token)}
    ui_url = None
    if options.ui:
        from telltale.web.app import build_web_app  # the dashboard's imports only when served

        ui_sock = _bind(options.host, options.ui_port)
        ui_url = f"http://{host}:{ui_sock.getsockname()[1]}"
        apps[ui_sock.getsockname()[1]] = build_web_app(settings, options.token)
        sockets.append(ui_sock)
        address["ui"] = ui_url
    receiving = _start_receiving(settings, options, store) if options.receiver else None
    if receiving is not None:
        http_sock = receiving.http_sock
        apps[http_sock.getsockname()[1]] = receiving.app
        sockets.append(http_sock)
        address["http"] = f"http://{host}:{http_sock.getsockname()[1]}"
        address["grpc_port"] = receiving.grpc_port
    addr_path = address_file(settings.db_path)
    if receiving is not None:  # only a writing server takes other commands' work
        addr_path.write_text(json.dumps(address))
    config = uvicorn.Config(_ByPort(apps), log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=30)
    server = _Server(config)
    if receiving is not None:
        log.warning("telltale receiving OTLP/HTTP on %s%s, store %s", address["http"],
                    f" and OTLP/gRPC on {host}:{receiving.grpc_port}" if receiving.grpc_port
                    else "", settings.db_path)
    if ui_url is not None:
        log.warning("telltale dashboard on %s/ (JSON API %s/api/, Jaeger API %s/api/traces)%s",
                    ui_url, ui_url, ui_url, "" if options.receiver else ", store read-only")
    try:
        server.run(sockets=sockets)
    finally:
        if receiving is not None:
            receiving.stop()
        store.close()
        if receiving is not None:
            _remove(addr_path)
    return 0


CHECKPOINT_MB = 256


@dataclass
class _Receiving:
    http_sock: socket.socket
    app: ASGIApp
    grpc_port: int | None
    stop: Callable[[], None]


def _start_receiving(settings: Settings, options: ServeOptions, store: Store) -> _Receiving:
    stats = ReceiverStats()
    budget = ByteBudget(options.queue_bytes)
    committer = Committer(store, budget, stats)
    # Small group commits go through the WAL, and each checkpoint rewrites the row group it
    # finds half full: a 256 MB WAL instead of 16 MB took sustained ingest from 20 k to 25 k
    # spans/s (bench/bench_serve.py, 60 s), for a longer replay after a crash (a few seconds).
    store.con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_MB}MB'")
    receiver = Receiver(committer, budget, stats, options.token, options.max_request_bytes)
    committer.start()
    watcher = SpoolWatcher(options.spool, committer) if options.spool else None
    if watcher is not None:
        watcher.start()
    http_sock = _bind(options.host, options.port)
    grpc_server, grpc_port = (start_grpc(receiver, options.host, options.grpc_port)
                              if options.grpc else (None, None))

    def stop() -> None:
        if grpc_server is not None:
            grpc_server.stop(grace=10).wait()
        if watcher is not None:
            watcher.stop()
        committer.stop()

    return _Receiving(http_sock, build_app(receiver, remote_routes(receiver, settings)),
                      grpc_port, stop)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
