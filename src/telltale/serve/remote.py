"""One store, two processes: other telltale commands go through a running `serve`.

DuckDB lets one process write a database file, and a reader cannot open it while that process
holds it. `serve` records its address beside the database (`<db>.serve.json`); a command that
finds the store locked looks there and, if the server answers, sends its work to it:
- `ingest` sends each source's bytes to `POST /api/ingest`, which the committer runs through
  the same ingest pipeline (so it is serialized with the receiver's commits);
- read commands send their arguments to `POST /api/cli`, which runs the same command inside the
  server over its open database and returns the output.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from telltale.ingest import SourceResult, ingest_bytes
from telltale.model import Format, QuarantineReason, Signal
from telltale.render.ingest import result_dict
from telltale.serve.committer import Job
from telltale.serve.receiver import Overloaded, Receiver, TooLarge
from telltale.settings import ENV_TOKEN, Settings
from telltale.store import BatchReport, Store

# Commands that write, or start processes of their own, are never forwarded as text.
WRITERS = frozenset({"ingest", "serve", "demo", "simulate"})
_CLI_LOCK = threading.Lock()  # forwarded commands swap sys.stdout: one at a time


def address_file(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".serve.json")


@dataclass(frozen=True)
class RemoteServer:
    url: str
    token: str | None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def ingest(self, data: bytes, *, source: str, fmt: Format, mapping: dict[str, Any] | None,
               signal: Signal | None) -> SourceResult:
        params = {"source": source, "format": fmt.value}
        if signal is not None:
            params["signal"] = signal.value
        headers = self._headers()
        if mapping:
            headers["X-Telltale-Mapping"] = base64.b64encode(orjson.dumps(mapping)).decode()
        reply = httpx.post(f"{self.url}/api/ingest", params=params, content=data,
                           headers=headers, timeout=None)
        if reply.status_code != 200:
            return SourceResult(source, None, "", error=f"{source}: server refused it "
                                f"({reply.status_code}: {reply.text.strip()[:200]})")
        return result_from_dict(reply.json())

    def run_cli(self, argv: list[str]) -> tuple[int, str]:
        columns = shutil.get_terminal_size().columns
        reply = httpx.post(f"{self.url}/api/cli", json={"argv": argv, "columns": columns},
                           headers=self._headers(), timeout=None)
        if reply.status_code != 200:
            return 1, f"Error: the server at {self.url} refused ({reply.status_code}: " \
                      f"{reply.text.strip()[:200]})\n"
        body = reply.json()
        return int(body["exit_code"]), str(body["output"])


def find_server(db_path: Path) -> RemoteServer | None:
    """The server holding `db_path`, if its address file names a live one."""
    path = address_file(db_path)
    try:
        info = json.loads(path.read_text())
        url = str(info["http"])
    except (OSError, ValueError, KeyError):
        return None
    server = RemoteServer(url, os.environ.get(ENV_TOKEN))
    try:
        httpx.get(f"{url}/healthz", timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        return None
    return server


def result_from_dict(d: dict[str, Any]) -> SourceResult:
    report = BatchReport(source=d["source"], format=d["format"] or "unknown",
                         batch_id=d["batch"], already_ingested=d["already_ingested"])
    report.stored.update({Signal(k): v for k, v in d["stored"].items()})
    report.quarantined.update({QuarantineReason(k): v for k, v in d["quarantined"].items()})
    fmt = Format(d["format"]) if d["format"] else None
    return SourceResult(d["source"], fmt, d["detected"], report if not d["error"] else None,
                        d["error"])


def remote_routes(receiver: Receiver, settings: Settings) -> list[Route]:
    async def api_ingest(request: Request) -> Response:
        q = request.query_params
        try:
            fmt = Format(q.get("format", "auto"))
            signal = Signal(q["signal"]) if q.get("signal") else None
            header = request.headers.get("x-telltale-mapping")
            mapping = orjson.loads(base64.b64decode(header)) if header else None
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        source = q.get("source", "-")
        try:
            data, reserved = await receiver.read_body(request.stream(), "")
        except TooLarge:
            return JSONResponse({"error": f"{source} is larger than the server's request cap "
                                 f"({receiver.max_request_bytes} bytes); stop the server to "
                                 "ingest it directly, or raise --max-request-bytes"},
                                status_code=413)
        except Overloaded:
            return JSONResponse({"error": "server busy"}, status_code=429,
                                headers={"Retry-After": "1"})

        def task(store: Store) -> SourceResult:
            return ingest_bytes(store, data, source=source, fmt=fmt, mapping=mapping,
                                signal=signal)
        future = receiver.committer.submit(Job(reserved=reserved, task=task))
        result: SourceResult = await asyncio.wrap_future(future)
        return JSONResponse(result_dict(result))

    async def api_cli(request: Request) -> Response:
        body = await request.json()
        argv = [str(a) for a in body.get("argv", [])]
        if any(a in WRITERS for a in argv[:1]):
            return JSONResponse({"error": f"{argv[0]} is not forwarded"}, status_code=400)
        columns = body.get("columns")
        code, output = await run_in_threadpool(
            run_cli_here, argv, settings, columns if isinstance(columns, int) else None)
        return JSONResponse({"exit_code": code, "output": output})

    return [Route("/api/ingest", api_ingest, methods=["POST"]),
            Route("/api/cli", api_cli, methods=["POST"])]


@contextlib.contextmanager
def _columns(columns: int | None) -> Iterator[None]:
    saved = os.environ.get("COLUMNS")
    if columns:
        os.environ["COLUMNS"] = str(max(40, min(columns, 400)))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


def run_cli_here(argv: list[str], settings: Settings,
                 columns: int | None = None) -> tuple[int, str]:
    """Run a read command in this (the server's) process, over its open database, rendering
    for the caller's terminal width."""
    import click

    from telltale.cli import main  # the CLI imports this module
    out = io.StringIO()
    with _CLI_LOCK, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
            _columns(columns):
        try:
            main.main(args=argv, prog_name="telltale", standalone_mode=False,
                      obj={"settings": settings})
            code = 0
        except click.ClickException as exc:
            exc.show(file=out)
            code = exc.exit_code
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.exceptions.Abort:
            code = 1
    return code, out.getvalue()
