"""What every Mermaid diagram shares: label escaping, stable node ids, duration text.

Telemetry names are data: a span called `GET "/a"; end --> [x] #1 %%` must come out as that
text, not as Mermaid syntax. Every character outside a small safe set is written as a Mermaid
entity code (`#quot;`, `#35;`, ...), which every diagram type decodes back when it draws the
label. Unicode letters and digits are kept as they are.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# ASCII punctuation some diagram type reads as syntax inside a label or message text: `;`
# ends a sequence statement, `#` and `%%` start comments (and `#...;` an entity), `:` splits a
# gantt task, `"` closes a flowchart label, `<` opens HTML, a backtick starts Markdown,
# brackets, braces and `|` close shapes and edge labels, a backslash before `n` breaks the
# line. Each becomes an entity code; so does
# a `-` next to another (`-->`, `--x`: arrows). Other ASCII punctuation and all non-ASCII text
# are kept as they are, so a label stays readable in the Mermaid source.
_ENCODED = frozenset('"#;%:<>&`|[]{}\\')
_NAMED = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;"}
# Mermaid swaps entity codes for private markers (`ﬂ°°`, `ﬂ°`, `¶ß`) before parsing and back
# after, more than once in flowcharts: a name holding a marker would be "decoded" too, so
# `clip` breaks them up (the ligature `ﬂ` becomes `fl`, a space goes between `¶` and `ß`).
_MARKERS = {"ﬂ": "fl", "¶ß": "¶ ß"}
_ID_CHARS = re.compile(r"[^A-Za-z0-9_]+")
MAX_LABEL = 120
MAX_ID = 40


def label(text: str, max_len: int = MAX_LABEL) -> str:
    """`text` as a Mermaid label body (no surrounding quotes): whitespace and control
    characters become single spaces, long text is cut with an ellipsis, and every character
    Mermaid could read as syntax is an entity code."""
    return escape(clip(text, max_len))


def clip(text: str, max_len: int = MAX_LABEL) -> str:
    """The visible text a label shows: one line, at most `max_len` characters."""
    flat = " ".join("".join(" " if _is_space(c) else c for c in text).split())
    for marker, plain in _MARKERS.items():
        flat = flat.replace(marker, plain)
    if len(flat) > max_len:
        flat = flat[: max_len - 1].rstrip() + "…"
    return flat


def escape(text: str) -> str:
    """Entity-encode one line of text (callers pass it through `clip` first)."""
    out: list[str] = []
    last = len(text) - 1
    for i, c in enumerate(text):
        if c in _NAMED:
            out.append(_NAMED[c])
        elif c in _ENCODED or (c == "-" and (
                (i > 0 and text[i - 1] == "-") or (i < last and text[i + 1] == "-"))):
            out.append(f"#{ord(c)};")
        else:
            out.append(c)
    return "".join(out)


# Words a gantt line may start with (its lexer matches them before task text, ignoring case):
# a task named "call x" or "2024-01-01 job" would be read as syntax.
GANTT_KEYWORDS = ("accdescr", "acctitle", "axisformat", "call", "click", "dateformat",
                  "excludes", "gantt", "href", "inclusiveenddates", "includes", "section",
                  "tickinterval", "title", "todaymarker", "topaxis", "weekday", "weekend")


def line_label(text: str, max_len: int = MAX_LABEL, keywords: tuple[str, ...] = GANTT_KEYWORDS) -> str:
    """A label that starts a line: like `label`, with the first character an entity code
    when the text starts with a keyword or a digit, so the lexer sees plain text."""
    flat = clip(text, max_len)
    if flat and (flat[0].isdigit() or flat.lower().startswith(keywords)):
        return f"#{ord(flat[0])};{escape(flat[1:])}"
    return escape(flat)


def quoted(text: str, max_len: int = MAX_LABEL) -> str:
    """A double-quoted label: the form flowchart nodes, edges and subgraphs accept."""
    return f'"{label(text, max_len)}"'


def _is_space(c: str) -> bool:
    return c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")


class NodeIds:
    """Stable, collision-proof Mermaid ids for a set of keys: a readable sanitized form of
    the key (`svc_api_gateway`), with `_2`, `_3`... for keys that sanitize alike. Ids are
    assigned in sorted key order, so the same keys always get the same ids."""

    def __init__(self, prefix: str, keys: Iterable[str]) -> None:
        self._ids: dict[str, str] = {}
        taken: set[str] = set()
        for key in sorted(set(keys)):
            base = f"{prefix}_{_ID_CHARS.sub('_', key).strip('_')[:MAX_ID]}".rstrip("_")
            candidate, n = base, 1
            while candidate in taken:
                n += 1
                candidate = f"{base}_{n}"
            taken.add(candidate)
            self._ids[key] = candidate

    def __getitem__(self, key: str) -> str:
        return self._ids[key]

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)


def duration(ns: int | float) -> str:
    """A duration for a label: µs below 1 ms, ms below 10 s, then seconds."""
    if ns < 1_000_000:
        return f"{ns / 1e3:.0f} µs"
    if ns < 10_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def ms(value: float) -> str:
    """A value already in milliseconds (the analyses' p50/p95) as label text."""
    return duration(value * 1e6)


def percent(fraction: float) -> str:
    """An error share: whole percent from 10 %, one decimal below, never "0.0%" for a few."""
    pct = 100.0 * fraction
    if pct == 0 or pct >= 10:
        return f"{pct:.0f}%"
    return f"{pct:.1f}%" if pct >= 0.1 else "<0.1%"
