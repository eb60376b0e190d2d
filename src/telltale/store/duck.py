"""The DuckDB store: one file, one write path (`commit`), numbered migrations."""

from __future__ import annotations

import re
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from telltale.model import MetricType, QuarantineReason, Signal
from telltale.normalize import staging
from telltale.normalize.anyvalue import go_float
from telltale.normalize.staging import Decoded
from telltale.settings import EARLIEST_VALID_NS, Settings
from telltale.store import (
    json_lines,
    log_assign,
    otlp_json,
    otlp_proto,
    schema,
    span_index,
    validate,
)
from telltale.store.batches import BatchReport, BatchSource
from telltale.store.staging_tables import (
    NeedsStaging,
    concat,
    create_temp,
    staging_names,
    unregister,
)

# Per metric type, the columns after the common ones (in table order).
_METRIC_VALUE_COLUMNS = {
    kind: [f.name for f in sch if f.name not in staging.METRIC_COMMON_NAMES]
    for kind, sch in staging.METRICS.items()
}


_SHARED: dict[Path, duckdb.DuckDBPyConnection] = {}


class StoreLockedError(RuntimeError):
    """The database file is held by another process."""


class StoreError(RuntimeError):
    """The database file cannot be used (not a DuckDB file, newer schema...)."""


class Store:
    """A telltale store in one DuckDB file. Use as a context manager."""

    def __init__(self, path: Path | str, *, settings: Settings | None = None,
                 read_only: bool = False) -> None:
        self.path = Path(path)
        self.settings = settings or Settings(db_path=self.path)
        self.read_only = read_only
        self._staging_ready = False
        if read_only and not self.path.exists():
            raise StoreError(f"no telltale store at {self.path} (ingest something first)")
        shared = _SHARED.get(self.path.resolve())
        try:
            # Inside the process that holds the file (the server), share its database.
            self.con = shared.cursor() if shared else duckdb.connect(str(self.path),
                                                                      read_only=read_only)
        except duckdb.IOException as exc:
            raise _explain_open_error(self.path, exc) from exc
        if not shared:  # a shared database already has them
            self._register_functions()
        self.con.execute("SET enable_progress_bar = false")  # a server's stderr is a log
        if not read_only:
            # A checkpoint's vacuum merges partly filled row groups by writing them again, and
            # the blocks they held stay in the file as free space (a third of it after one
            # unordered insert: json_lines.unordered_insert). Row groups emptied by deletes are
            # still dropped without it.
            self.con.execute("SET max_vacuum_tasks = 0")
        try:
            if not read_only:
                self.migrate()
            elif self.schema_version() == 0:
                raise StoreError(f"{self.path} is not a telltale store")
            else:
                self._refuse_newer(self.schema_version())
        except Exception:
            self.con.close()  # release the file lock: the caller never gets this object
            raise

    def _register_functions(self) -> None:
        functions: list[tuple[str, Any, Any]] = [
            (otlp_json.UDF_NAME, otlp_json.complex_value_udf, ["VARCHAR"]),
            (otlp_json.FLOAT_UDF_NAME, go_float, ["DOUBLE"]),
            (otlp_proto.COMPLEX_UDF_NAME, otlp_proto.complex_value_udf, ["BLOB[]", "BOOLEAN"]),
        ]
        for name, fn, params in functions:
            try:
                self.con.create_function(name, fn, params, "VARCHAR", side_effects=False)
            except duckdb.CatalogException as exc:
                # Two Stores on one file in one process share DuckDB's database instance,
                # whose catalog already has them from the first.
                if "already exists" not in str(exc):
                    raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if _SHARED.get(self.path.resolve()) is self.con:
            del _SHARED[self.path.resolve()]
        self.con.close()

    def share(self) -> None:
        """Let other `Store`s opened on this path in this process use this database (DuckDB
        refuses a second open of a file in one process; cursors share it safely)."""
        _SHARED[self.path.resolve()] = self.con

    # -- schema -----------------------------------------------------------------------------

    def schema_version(self) -> int:
        exists = self.con.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_name = 'telltale_schema_version'"
        ).fetchall()[0][0]
        if not exists:
            return 0
        row = self.con.execute("SELECT max(Version) FROM telltale_schema_version").fetchall()
        return int(row[0][0] or 0)

    def _refuse_newer(self, current: int) -> None:
        if current > len(schema.MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {current}; this telltale knows "
                f"{len(schema.MIGRATIONS)}. Upgrade telltale."
            )

    def migrate(self) -> None:
        self.con.execute(schema.VERSION_TABLE)
        current = self.schema_version()
        self._refuse_newer(current)
        for version, statements in enumerate(schema.MIGRATIONS, start=1):
            if version <= current:
                continue
            self.con.begin()
            try:
                for statement in statements:
                    self.con.execute(statement)
                self.con.execute(
                    "INSERT INTO telltale_schema_version VALUES (?, ?)",
                    [version, self.settings.clock()],
                )
                self.con.commit()
            except Exception:
                self.con.rollback()
                raise

    # -- the one write path -----------------------------------------------------------------

    def find_batch(self, content_hash: str) -> int | None:
        return self._find_batches([content_hash]).get(content_hash)

    def last_batch_key(self, prefix: str) -> str | None:
        """The content key of the last batch committed whose key starts with `prefix`."""
        rows = self.con.execute(
            "SELECT ContentHash FROM telltale_ingest_batches WHERE starts_with(ContentHash, ?)"
            " ORDER BY BatchId DESC LIMIT 1", [prefix]).fetchall()
        return str(rows[0][0]) if rows else None

    def _find_batches(self, hashes: list[str]) -> dict[str, int]:
        rows = self.con.execute(
            "SELECT ContentHash, BatchId FROM telltale_ingest_batches"
            " WHERE list_contains(?, ContentHash)", [hashes]).fetchall()
        return {str(h): int(b) for h, b in rows}

    def commit(self, decoded: Decoded, *, source: str, fmt: str,
               content_hash: str) -> BatchReport:
        """Validate, store and quarantine one decoded source atomically.

        Returns only after the transaction is durable; on any error nothing is written.
        Content already committed (same hash) is not stored again.
        """
        return self.commit_parts(decoded, [BatchSource(source, fmt, content_hash)])[0]

    def commit_parts(self, decoded: Decoded, parts: list[BatchSource]) -> list[BatchReport]:
        """Commit several sources in one transaction (a group commit), each its own batch.

        Rows and rejects say their part by index into `parts` (`Decoded.extend(…, part=i)`);
        the reports come back in the same order. One durable commit for many small requests is
        what makes the receiver fast; a part whose content was committed before (or earlier in
        the same group) is skipped and reported as already ingested.
        """
        try:
            return self._commit_parts(decoded, parts, fast=True)
        except NeedsStaging:  # rolled back: commit again, with the records staged
            return self._commit_parts(decoded, parts, fast=False)

    def _commit_parts(self, decoded: Decoded, parts: list[BatchSource], *,
                      fast: bool) -> list[BatchReport]:
        if self.read_only:
            raise StoreError("store is open read-only")
        reports = [BatchReport(source=p.source, format=p.fmt) for p in parts]
        known = self._find_batches([p.content_hash for p in parts])
        first_part: dict[str, int] = {}
        skipped: list[int] = []
        for i, part in enumerate(parts):
            if part.content_hash in known or part.content_hash in first_part:
                reports[i].already_ingested = True
                skipped.append(i)
            first_part.setdefault(part.content_hash, i)
        if len(skipped) == len(parts):
            for report, part in zip(reports, parts, strict=True):
                report.batch_id = known.get(part.content_hash)
            return reports
        con = self.con
        self._ensure_staging()
        filled: set[str] = set(staging_names())  # until staging says which it filled
        con.begin()
        try:
            base = int(con.execute(
                "SELECT coalesce(max(BatchId), 0) + 1 FROM telltale_ingest_batches"
            ).fetchall()[0][0])
            params = {
                "batch": base,
                "min_ts": EARLIEST_VALID_NS,
                "max_ts": self.settings.latest_valid_ns(),
                "max_bytes": self.settings.max_record_bytes,
                "now": self.settings.clock(),
            }
            filled = self._stage(decoded, reports, params, skipped, fast)
            for check, reason_sql, store_sql, signal, time_expr in self._checks():
                if check in filled:
                    self._check_and_store(check, reason_sql, store_sql, signal, time_expr,
                                          reports, params)
            if any(r.stored[Signal.TRACES] for r in reports):  # the index commits with its spans
                span_index.index_batches(con, base, base + len(parts) - 1)
            if "stg_logs" in filled:  # templates commit with their records, or neither does
                log_assign.assign(con, self.path, base, base + len(parts) - 1)
            rows = []
            for i, (report, part) in enumerate(zip(reports, parts, strict=True)):
                if i in skipped:
                    report.batch_id = known.get(part.content_hash,
                                                base + first_part[part.content_hash])
                    continue
                report.batch_id = base + i
                rows.append([base + i, part.source, part.fmt, part.content_hash, params["now"],
                             report.records_read, report.total_stored, report.total_quarantined])
            # One statement for the group (executemany ran one per request: 5 % of a commit).
            if rows:
                con.execute("INSERT INTO telltale_ingest_batches SELECT unnest(?), unnest(?),"
                            " unnest(?), unnest(?), unnest(?), unnest(?), unnest(?), unnest(?)",
                            [list(column) for column in zip(*rows, strict=True)])
            con.commit()
        except Exception:
            con.rollback()
            log_assign.forget(self.path)  # the cached miner holds what was rolled back
            raise
        finally:
            self._clear_staging(filled)
        return reports

    @staticmethod
    def _checks() -> list[tuple[str, str, str, Signal, str]]:
        checks = [
            ("stg_spans", validate.SPAN_REASON, validate.SPAN_STORE, Signal.TRACES, "StartNs"),
            ("stg_logs", validate.LOG_REASON, validate.LOG_STORE, Signal.LOGS,
             "coalesce(nullif(Timestamp, 0), ObservedTimestamp)"),
        ]
        checks += [(f"stg_metrics_{kind}", validate.metric_reason(kind),
                    validate.metric_store(kind, _METRIC_VALUE_COLUMNS[kind]), Signal.METRICS,
                    "TimeUnix") for kind in MetricType]
        return checks

    def _ensure_staging(self) -> None:
        """Staging tables live as long as the connection: creating and dropping them in every
        transaction cost more than a small commit's real work."""
        if self._staging_ready:
            return
        self.con.execute(create_temp("stg_spans", staging.SPANS))
        self.con.execute(create_temp("stg_logs", staging.LOGS))
        for kind, sch in staging.METRICS.items():
            self.con.execute(create_temp(f"stg_metrics_{kind}", sch))
        self._staging_ready = True

    def _stage(self, decoded: Decoded, reports: list[BatchReport], params: dict[str, Any],
               skipped: list[int], fast: bool) -> set[str]:
        """Fill the staging tables; returns the names of those that received rows. With `fast`,
        OTLP JSON trace lines and protobuf spans go straight to otel_traces in one statement
        each, or raise NeedsStaging if anything needs quarantine."""
        con = self.con
        filled: set[str] = set()
        trace_lines = decoded.json_trace_lines
        if trace_lines and fast:
            for part, n in json_lines.store_trace_lines(con, trace_lines, params, skipped).items():
                reports[part].stored[Signal.TRACES] += n
            trace_lines = []
        if decoded.spans or trace_lines:
            filled.add("stg_spans")
        if decoded.logs or decoded.json_log_lines:
            filled.add("stg_logs")
        filled.update(f"stg_metrics_{kind}" for kind, tables in decoded.metrics.items() if tables)
        # One insert per staging table: many small inserts cost far more than one concat.
        if decoded.spans:
            self._append("stg_spans", concat(decoded.spans))
        if decoded.logs:
            self._append("stg_logs", concat(decoded.logs))
        for kind, tables in decoded.metrics.items():
            if tables:
                self._append(f"stg_metrics_{kind}", concat(tables))
        if decoded.proto_traces:  # valid spans are stored here, rejected ones staged
            stored, rejected = otlp_proto.store(con, otlp_proto.merge(decoded.proto_traces),
                                                params, skipped, fast=fast)
            for part, n in stored.items():
                reports[part].stored[Signal.TRACES] += n
            filled.update(["stg_spans"] if rejected else [])
        for lines, table, stage_sql, suspects_sql in (
            (trace_lines, "stg_spans", otlp_json.STAGE_SPANS,
             otlp_json.SUSPECT_TRACE_LINES),
            (decoded.json_log_lines, "stg_logs", otlp_json.STAGE_LOGS, otlp_json.SUSPECT_LOG_LINES),
        ):
            if lines:
                json_lines.stage_lines(con, lines, table, stage_sql, suspects_sql)
        if skipped:
            for name in filled:
                con.execute(f"DELETE FROM {name} WHERE list_contains(?, coalesce(Part, 0))",
                            [skipped])
        rejects = [r for r in decoded.rejects if r.part not in skipped]
        if rejects:
            con.executemany(
                "INSERT INTO telltale_quarantine VALUES (?, ?, ?, ?, ?, ?, ?)",
                [[params["batch"] + r.part, r.signal.value, r.position, r.reason.value,
                  r.detail or None, r.raw, None] for r in rejects],
            )
            for r in rejects:
                reports[r.part].quarantined[r.reason] += 1
        return filled

    def _append(self, table: str, tbl: pa.Table) -> None:
        if tbl.num_rows == 0:
            return
        # Large record batches: DuckDB's Arrow scan pays a fixed cost per batch.
        tbl = pa.Table.from_batches(tbl.combine_chunks().to_batches(max_chunksize=1 << 16),
                                    schema=tbl.schema)
        self.con.register("tt_append_view", tbl)
        try:
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM tt_append_view")
        finally:
            unregister(self.con, "tt_append_view")

    def _check_and_store(self, check: str, reason_sql: str, store_sql: str, signal: Signal,
                         time_expr: str, reports: list[BatchReport],
                         params: dict[str, Any]) -> None:
        con = self.con
        bounds = {k: params[k] for k in ("min_ts", "max_ts", "max_bytes")}
        con.execute(reason_sql, bounds)
        counts = con.execute(validate.reason_counts(check)).fetchall()
        for part, reason, n in counts:
            if reason is None:
                reports[part].stored[signal] += int(n)
            else:
                reports[part].quarantined[QuarantineReason(reason)] += int(n)
        if any(reason is None for _, reason, _ in counts):
            con.execute(store_sql, {"batch": params["batch"]})
        if any(reason is not None for _, reason, _ in counts):
            con.execute(validate.quarantine_rows(check, signal.value, time_expr),
                        {"batch": params["batch"], "min_ts": bounds["min_ts"],
                         "max_ts": bounds["max_ts"]})

    def _clear_staging(self, names: set[str]) -> None:
        for name in sorted(names):
            self.con.execute(f"DELETE FROM temp.{name}")

    # -- reads ------------------------------------------------------------------------------

    def query(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read query from the store layer's own SQL (analyses call named methods)."""
        return self.con.execute(sql, params or []).fetchall()



def _explain_open_error(path: Path, exc: duckdb.IOException) -> Exception:
    message = str(exc)
    if "lock" in message.lower():
        pid = re.search(r"PID (\d+)", message)
        holder = f"process {pid.group(1)}" if pid else "another process"
        return StoreLockedError(
            f"{path} is being written by {holder}; DuckDB allows one writing process per file, "
            "so stop that process (or point --db at another file) and retry"
        )
    return StoreError(f"cannot open {path}: {message.splitlines()[0]}")
