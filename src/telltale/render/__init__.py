"""Rendering: typed results → terminal tables, JSON, CSV. No analysis logic here."""


def source_label(source: str) -> str:
    """A source's file name: enough to tell sources apart in a terminal table (JSON and CSV
    outputs keep full paths)."""
    return source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
