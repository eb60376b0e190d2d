"""The ingest pipeline: sources → detect → decode → the store's one write path."""

from __future__ import annotations

import gzip
import importlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import orjson

from telltale.model import Format, QuarantineReason, Signal
from telltale.normalize.detect import (
    HEAD_BYTES,
    LEADING_SPACE,
    DetectionError,
    detect,
    is_json_lines,
)
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject
from telltale.sources.files import FileSource, SourceError, content_hash, expand
from telltale.store import BatchReport, BatchSource, Store

# Line-oriented OTLP/JSON files larger than this are committed in chunks of about this size,
# each its own batch, so memory stays bounded whatever the file size (peak ≈ 8x a chunk).
CHUNK_BYTES = 64 << 20
# Chunks committed together, each still its own batch: a transaction must hold more than a row
# group (122,880 spans, ~75 MB of typical OTLP JSON) for DuckDB to write its row groups straight
# to the file; a smaller one goes through the WAL and a checkpoint, which cost 1.4 s of a 217 MB
# file's 6 s when each 64 MiB chunk was its own transaction.
CHUNKS_PER_COMMIT = 4


class Decoder(Protocol):
    def __call__(self, data: bytes, options: DecodeOptions) -> Decoded: ...


_DECODER_MODULES = {
    Format.OTLP_JSON: "telltale.normalize.otlp_json",
    Format.OTLP_PROTO: "telltale.normalize.otlp_binary",
    Format.JAEGER_JSON: "telltale.normalize.jaeger",
    Format.ZIPKIN_JSON: "telltale.normalize.zipkin",
    Format.CSV_SPANS: "telltale.normalize.csv_spans",
    Format.EVENTS_JSONL: "telltale.normalize.events",
    Format.RECORDER_JSONL: "telltale.normalize.recorder",
    Format.GITHUB_ACTIONS: "telltale.normalize.ci_github",
    Format.CI_JSONL: "telltale.normalize.ci_jsonl",
    Format.LOG_TEXT: "telltale.normalize.text_logs",
    Format.LOG_JSONL: "telltale.normalize.json_logs",
    Format.SYSLOG: "telltale.normalize.syslog",
    Format.NEZHA_LOGS: "telltale.normalize.nezha_logs",
    Format.NEZHA_METRICS: "telltale.normalize.nezha_metrics",
}


def decoder_for(fmt: Format) -> Decoder:
    module = importlib.import_module(_DECODER_MODULES[fmt])
    decode: Decoder = module.decode
    return decode


@dataclass
class SourceResult:
    """The outcome for one source: its batch report, how the format was chosen, or an error."""

    source: str
    format: Format | None
    evidence: str
    report: BatchReport | None = None
    error: str | None = None


def _batch_key(data: bytes, fmt: str, mapping: dict[str, Any] | None) -> str:
    """Idempotency key: the same bytes read the same way are one batch, stored once."""
    how = fmt + (orjson.dumps(mapping, option=orjson.OPT_SORT_KEYS).decode() if mapping else "")
    return f"{content_hash(data)}:{how}"


def _choose_format(head: bytes, source: str, fmt: Format) -> tuple[Format | None, str]:
    """The format to read with and why; None (with the reason) when nothing matches."""
    if fmt is not Format.AUTO:
        return fmt, "given with --format"
    try:
        found = detect(head[:HEAD_BYTES], source)
    except DetectionError as exc:
        return None, str(exc)
    return found.format, found.evidence


def ingest_bytes(store: Store, data: bytes, *, source: str, fmt: Format = Format.AUTO,
                 mapping: dict[str, Any] | None = None,
                 signal: Signal | None = None) -> SourceResult:
    """Decode and commit one source's bytes. Undetectable input is quarantined whole; empty
    input holds no records, so nothing is stored or quarantined for it."""
    if LEADING_SPACE.match(data).end() == len(data):  # type: ignore[union-attr]  # blank (no copy)
        return SourceResult(source, None, "empty input", BatchReport(source=source, format="empty"))
    chosen, evidence = _choose_format(data, source, fmt)
    return _commit_whole(store, data, source, chosen, evidence, mapping, signal)


def _commit_whole(store: Store, data: bytes, source: str, fmt: Format | None, evidence: str,
                  mapping: dict[str, Any] | None, signal: Signal | None) -> SourceResult:
    if fmt is None:
        decoded = Decoded(rejects=[Reject(signal or Signal.TRACES, "file",
                                          QuarantineReason.UNPARSABLE,
                                          data[:1 << 20].decode(errors="replace"), evidence)])
        report = store.commit(decoded, source=source, fmt="unknown",
                              content_hash=_batch_key(data, "unknown", mapping))
        return SourceResult(source, None, evidence, report)
    options = DecodeOptions(source=source, mapping=mapping or {}, signal=signal)
    decoded = decoder_for(fmt)(data, options)
    report = store.commit(decoded, source=source, fmt=fmt.value,
                          content_hash=_batch_key(data, fmt.value, mapping))
    return SourceResult(source, fmt, evidence, report)


def ingest_paths(store: Store, paths: Iterable[str], *, fmt: Format = Format.AUTO,
                 mapping: dict[str, Any] | None = None, signal: Signal | None = None,
                 on_progress: Callable[[FileSource, int], None] | None = None,
                 chunk_bytes: int = CHUNK_BYTES) -> list[SourceResult]:
    """Ingest every source named by `paths` (see `sources.files.expand`)."""
    return ingest_sources(store, expand(paths), fmt=fmt, mapping=mapping, signal=signal,
                          on_progress=on_progress, chunk_bytes=chunk_bytes)


def ingest_sources(store: Store, sources: Iterable[FileSource], *, fmt: Format = Format.AUTO,
                   mapping: dict[str, Any] | None = None, signal: Signal | None = None,
                   on_progress: Callable[[FileSource, int], None] | None = None,
                   chunk_bytes: int = CHUNK_BYTES) -> list[SourceResult]:
    """Ingest sources, one transaction each (or per chunk of a large JSON-lines file). A source
    that cannot be read is reported with an error and does not stop the others."""
    results: list[SourceResult] = []
    for src in sources:
        def progress(n: int, src: FileSource = src) -> None:
            if on_progress is not None:
                on_progress(src, n)
        try:
            with src.open() as stream:
                head = stream.read(chunk_bytes)
                if len(head) < chunk_bytes:
                    results.append(ingest_bytes(store, head, source=src.name, fmt=fmt,
                                                mapping=mapping, signal=signal))
                    progress(src.size)
                else:
                    results.append(_ingest_large(store, src.name, head, stream, fmt, mapping,
                                                 signal, chunk_bytes, progress))
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            results.append(SourceResult(src.name, None, "",
                                        error=f"{src.name}: corrupt gzip data ({exc})"))
        except (OSError, SourceError) as exc:
            results.append(SourceResult(src.name, None, "", error=f"{src.name}: {exc}"))
    return results


def _ingest_large(store: Store, source: str, head: bytes, stream: BinaryIO, fmt: Format,
                  mapping: dict[str, Any] | None, signal: Signal | None, chunk_bytes: int,
                  progress: Callable[[int], None]) -> SourceResult:
    chosen, evidence = _choose_format(head, source, fmt)
    if chosen is not Format.OTLP_JSON or not is_json_lines(head):
        # Single documents (and mapped events, whose lines merge across the file) need it all.
        return _commit_whole(store, head + stream.read(), source, chosen, evidence, mapping,
                             signal)
    fmt = chosen
    merged = BatchReport(source=source, format=fmt.value, already_ingested=True)
    decode = decoder_for(fmt)
    group, size = Decoded(), 0
    parts: list[BatchSource] = []

    def commit() -> None:
        for report in store.commit_parts(group, parts):
            merged.batch_id = report.batch_id
            merged.stored.update(report.stored)
            merged.quarantined.update(report.quarantined)
            merged.already_ingested &= report.already_ingested
        progress(size)

    for first_line, chunk in _line_chunks(head, stream, chunk_bytes):
        options = DecodeOptions(source=source, mapping=mapping or {}, signal=signal,
                                first_line=first_line)
        group.extend(decode(chunk, options), part=len(parts))
        parts.append(BatchSource(source, fmt.value,
                                 f"{_batch_key(chunk, fmt.value, mapping)}:{first_line}"))
        size += len(chunk)
        if len(parts) == CHUNKS_PER_COMMIT:
            commit()
            group, parts, size = Decoded(), [], 0
    if parts:
        commit()
    return SourceResult(source, fmt, f"{evidence}; committed in chunks", merged)


def _line_chunks(first: bytes, stream: BinaryIO, size: int) -> Iterator[tuple[int, bytes]]:
    """(first line number, whole lines) of about `size` bytes each; deterministic boundaries,
    so re-ingesting the same file meets the same chunks (and stores nothing twice). Each chunk
    is copied once at most (a copy of 256 MiB costs ~0.05 s)."""
    line, carry, block = 1, b"", first
    while block:
        cut = block.rfind(b"\n") + 1
        if cut == 0:  # no line end yet: one very long line, keep reading
            carry, block = carry + block, stream.read(size)
            continue
        if carry:
            chunk = b"".join([carry, memoryview(block)[:cut]])
        else:
            chunk = block if cut == len(block) else block[:cut]
        yield line, chunk
        line += chunk.count(b"\n")
        carry, block = block[cut:], stream.read(size)
    if carry:
        yield line, carry
