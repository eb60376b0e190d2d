"""Large JSON-lines files are committed in chunks: bounded memory, same result as one batch."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import T0, pinned_settings, span, trace_request
from telltale.ingest import SourceResult, _line_chunks, ingest_paths
from telltale.store import Store

BROKEN_AT = {3, 17, 40, 41, 77}


def _file(tmp_path: Path, lines: int = 90) -> Path:
    out = []
    for no in range(1, lines + 1):
        if no in BROKEN_AT:
            out.append(b'{"resourceSpans": [ torn')
            continue
        req = trace_request([span(f"{no:032x}", f"{no:016x}", f"op-{no}", start=T0 + no),
                             span(f"{no:032x}", f"{no + 1000:016x}", "child",
                                  parent=f"{no:016x}", start=T0 + no)])
        out.append(orjson.dumps(req))
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


def _ingest(db: Path, path: Path, chunk: int) -> tuple[SourceResult, list[tuple[object, ...]],
                                                       list[tuple[object, ...]]]:
    with Store(db, settings=pinned_settings(db)) as store:
        (result,) = ingest_paths(store, [str(path)], chunk_bytes=chunk)
        spans = store.query("SELECT TraceId, SpanId, ParentSpanId, SpanName, Timestamp "
                            "FROM otel_traces ORDER BY ALL")
        quarantine = store.query("SELECT Position, Reason, Raw FROM telltale_quarantine "
                                 "ORDER BY ALL")
    return result, spans, quarantine


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_chunks_store_exactly_what_one_batch_stores(tmp_path: Path, compress: bool) -> None:
    path = _file(tmp_path)
    if compress:
        gz = tmp_path / "big.jsonl.gz"
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path = gz
    whole, whole_spans, whole_q = _ingest(tmp_path / "whole.duckdb", path, 1 << 30)
    chunked, chunk_spans, chunk_q = _ingest(tmp_path / "chunked.duckdb", path, 2048)
    assert "chunks" in chunked.evidence and "chunks" not in whole.evidence
    assert chunk_spans == whole_spans and len(whole_spans) == 2 * (90 - len(BROKEN_AT))
    # Quarantine positions are the file's own line numbers, not the chunk's.
    assert chunk_q == whole_q
    assert sorted(int(str(pos).split()[1]) for pos, _, _ in chunk_q) == sorted(BROKEN_AT)
    assert chunked.report is not None and whole.report is not None
    assert chunked.report.stored == whole.report.stored
    assert chunked.report.quarantined == whole.report.quarantined


def test_chunked_reingest_stores_nothing_twice(tmp_path: Path) -> None:
    path = _file(tmp_path)
    db = tmp_path / "t.duckdb"
    first, spans, _ = _ingest(db, path, 2048)
    again, spans_again, _ = _ingest(db, path, 2048)
    assert first.report is not None and not first.report.already_ingested
    assert again.report is not None and again.report.already_ingested
    assert spans_again == spans
    with Store(db, read_only=True) as store:
        batches = store.query("SELECT count(*) FROM telltale_ingest_batches")[0][0]
    assert batches > 5  # several chunks, each its own committed batch


def test_a_grown_file_stores_only_its_new_chunks(tmp_path: Path) -> None:
    """A file ingested before and since appended to: the commit that holds both its last old
    chunk and new ones stores only the new ones (the one-statement JSON path reads no line of
    an already-ingested chunk)."""
    lines = [orjson.dumps(trace_request([span(f"{no:032x}", f"{no:016x}", f"op-{no}",
                                             start=T0 + no)])) + b"\n" for no in range(1, 121)]
    grown = b"".join(lines)
    chunks = [c for _, c in _line_chunks(grown[:2048], io.BytesIO(grown[2048:]), 2048)]
    assert len(chunks) > 6
    old, new = tmp_path / "old.jsonl", tmp_path / "grown.jsonl"
    old.write_bytes(b"".join(chunks[:5]))  # exactly the grown file's first five chunks
    new.write_bytes(grown)
    db = tmp_path / "t.duckdb"
    _ingest(db, old, 2048)
    again, spans, quarantine = _ingest(db, new, 2048)
    _, fresh_spans, _ = _ingest(tmp_path / "fresh.duckdb", new, 2048)
    assert again.report is not None and not again.report.already_ingested
    assert again.report.total_stored == 120 - sum(c.count(b"\n") for c in chunks[:5])
    assert spans == fresh_spans and len(spans) == 120 and not quarantine


def test_pretty_printed_document_is_never_split(tmp_path: Path) -> None:
    req = trace_request([span(f"{i + 1:032x}", f"{i + 1:016x}", f"op-{i}") for i in range(60)])
    path = tmp_path / "pretty.json"
    path.write_bytes(orjson.dumps(req, option=orjson.OPT_INDENT_2))
    result, spans, quarantine = _ingest(tmp_path / "p.duckdb", path, 1024)
    assert len(spans) == 60 and quarantine == []
    assert "chunks" not in result.evidence


def _reference_chunks(data: bytes, size: int) -> list[tuple[int, bytes]]:
    """The chunking rule, plainly: blocks of `size` bytes, each chunk ending at the last line end
    of its block (a block without one joins the next), the rest of a block opening the next."""
    out: list[tuple[int, bytes]] = []
    blocks = [data[i:i + size] for i in range(0, len(data), size)]
    line, carry = 1, b""
    for block in blocks:
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            carry += block
            continue
        chunk = carry + block[:cut]
        out.append((line, chunk))
        line += chunk.count(b"\n")
        carry = block[cut:]
    if carry:
        out.append((line, carry))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=40), st.booleans(),
       st.integers(min_value=1, max_value=64), st.booleans())
def test_chunk_boundaries_follow_the_rule(line_lengths: list[int], trailing: bool, size: int,
                                          compress: bool) -> None:
    data = b"\n".join(b"x" * n for n in line_lengths) + (b"\n" if trailing else b"")
    raw: io.BufferedIOBase = io.BytesIO(gzip.compress(data) if compress else data)
    stream = gzip.GzipFile(fileobj=raw) if compress else raw
    head = stream.read(size)
    got = [(n, bytes(c)) for n, c in _line_chunks(head, stream, size)] if head else []  # type: ignore[arg-type]
    assert got == _reference_chunks(data, size)
    assert b"".join(c for _, c in got) == data
