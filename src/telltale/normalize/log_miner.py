"""Log template mining: a Drain-style miner with masking, built for speed and stable ids.

Each message is masked (variables replaced by `<*>` before any clustering, so ids, numbers and
addresses never split or pollute templates), runs of `<*>` collapse into one multi-token
wildcard, and the masked line goes down a fixed-depth tree (token count, first token) to the
most similar template. Drain's weak spots are handled so:
- variables spanning several tokens: consecutive wildcards collapse, and a wildcard may absorb
  several tokens when a line matches no same-length template;
- the token-count split: that variable-length match lets lines of another length join an
  existing template instead of starting a new one;
- log levels: level tokens are never wildcarded, so `ERROR x` and `INFO x` stay apart.
Caches make the common case one dict lookup: on the raw line (exact repeats, frequent in any
log), then on the masked text (the same event with other values: no split), then on the masked
tokens (what matching sees); only a line whose masked tokens are new is matched.
Templates only widen; ids are assigned once, so persisted ids survive later ingests.

The miner is pure (no store): the store's write path (store/log_assign.py) runs it on every
committed batch of log records, and analyses load it from `telltale_log_templates`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

WILDCARD = "<*>"
MAX_PARAM_CHARS = 8192
SIMILARITY = 0.7  # one configuration for every log: share of a line's tokens that must agree

LEVELS = frozenset({"TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "WARNING", "ERROR", "ERR",
                    "CRIT", "CRITICAL", "FATAL", "SEVERE", "ALERT", "EMERG", "EMERGENCY"})

# Ordered passes, each guarded by a cheap test (regex scanning dominates the cost): a
# timestamp inside a message, URLs, absolute paths, then everything from a digit on (ids,
# numbers, IPs with ports, durations like 12ms, versions, UUIDs, hex). Masking from the first
# digit keeps a token's key and punctuation (`rhost=<*>`, `[<*>]:`, `blk_-<*>`): those are part
# of the event's identity, and a scanner that only starts at digits is several times faster.
# Patterns open with a literal where they can (`Mon(?<!\w\w\w\w)` is `\bMon`, the path's boundary
# check follows its `/`) so `re` skips ahead in C instead of trying every position.
_DATE = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)(?<!\w\w\w\w) (?:Jan|Feb|Mar|Apr|May|Jun|Jul"
                   r"|Aug|Sep|Oct|Nov|Dec) +\d{1,2} \d\d:\d\d:\d\d(?: \d{4})?")
_CLOCK = re.compile(r":\d\d:")  # in every date, rare elsewhere: a cheap test before _DATE
_URL = re.compile(r"[a-zA-Z][\w+.-]*://[^\s\"'<>]+")
_PATH = re.compile(r"/(?<![\w<>]/)[^\s,;'\"()\[\]]*")
_DIGITS = re.compile(r"\d[\w.:+@-]*")
# On an ASCII line `\d` and `\w` mean the same in ASCII mode, which `re` checks a third faster.
_DIGITS_ASCII = re.compile(_DIGITS.pattern, re.ASCII)
# Caches are bounded because the write path keeps a miner per store for the process's life:
# each holds at most CACHE_ENTRIES (emptied when full), and a line or masked text longer than
# CACHE_LINE_CHARS is not kept as a key (a few MB at most per cache).
CACHE_ENTRIES = 1 << 15
CACHE_LINE_CHARS = 512


def mask(message: str) -> list[str]:
    """The masked tokens of a message: variables become `<*>`, runs of them one `<*>`."""
    return _tokens(_masked_text(message))


def _masked_text(message: str) -> str:
    """The message with its variables replaced, not yet split into tokens."""
    if ":" in message and _CLOCK.search(message):
        message = _DATE.sub(WILDCARD, message)
    if "://" in message:
        message = _URL.sub(WILDCARD, message)
    if "/" in message:
        message = _PATH.sub(WILDCARD, message)
    digits = _DIGITS_ASCII if message.isascii() else _DIGITS
    return digits.sub(WILDCARD, message)


def _tokens(masked: str) -> list[str]:
    tokens = masked.split()
    return _collapse(tokens) if tokens.count(WILDCARD) > 1 else tokens


def _head(tokens: Sequence[str], i: int) -> str:
    """A tree key token: Drain's fixed depth keys on the first tokens, variables all alike."""
    if i >= len(tokens):
        return ""
    return WILDCARD if WILDCARD in tokens[i] else tokens[i]


def _is_level(token: str) -> bool:
    return token.strip("[]():<>").upper() in LEVELS


@dataclass
class Template:
    id: int
    tokens: list[str]  # same length as the lines of its leaf (uncollapsed wildcards)
    count: int = 0
    first_seen: int | None = None
    last_seen: int | None = None
    version: int = 0  # bumped when the template widens (its parameter regex changes)

    @property
    def text(self) -> str:
        return " ".join(_collapse(self.tokens))

    def touch(self, ts_ns: int | None, n: int = 1, last_ns: int | None = None) -> None:
        """Count `n` records first seen at `ts_ns` and last at `last_ns` (default: `ts_ns`)."""
        self.count += n
        last_ns = ts_ns if last_ns is None else last_ns
        if ts_ns is not None:
            self.first_seen = ts_ns if self.first_seen is None else min(self.first_seen, ts_ns)
        if last_ns is not None:
            self.last_seen = last_ns if self.last_seen is None else max(self.last_seen, last_ns)


def _remember(cache: dict[Any, Template], key: Any, tpl: Template) -> None:
    if len(cache) >= CACHE_ENTRIES:
        cache.clear()  # in place: add_all holds a reference to the raw-line cache
    cache[key] = tpl


def _collapse(tokens: Sequence[str]) -> list[str]:
    out: list[str] = []
    for tok in tokens:
        if not (tok == WILDCARD and out and out[-1] == WILDCARD):
            out.append(tok)
    return out


def _fits(template: Sequence[str], tokens: Sequence[str], ti: int = 0, li: int = 0) -> bool:
    """Does a line of another length fit a template if a `<*>` may take several tokens?

    Each wildcard takes one token, and more only if they are variables too (they hold a
    mask): a variable spanning several tokens fits, a constant word is never swallowed."""
    while ti < len(template):
        if li >= len(tokens):
            return False
        if template[ti] == WILDCARD:
            end = li + 1
            while True:
                if _fits(template, tokens, ti + 1, end):
                    return True
                if end < len(tokens) and WILDCARD in tokens[end]:
                    end += 1
                else:
                    return False
        if template[ti] != tokens[li]:
            return False
        ti += 1
        li += 1
    return li == len(tokens)


class TemplateMiner:
    """Assign each message a stable template id; `parameters` extracts its variable values."""

    def __init__(self, similarity: float = SIMILARITY) -> None:
        self.similarity = similarity
        self.templates: dict[int, Template] = {}
        self._leaves: dict[tuple[int, str, str], list[Template]] = {}
        self._by_first: dict[str, list[Template]] = {}  # templates with wildcards, any length
        self._cache: dict[tuple[str, ...], Template] = {}  # masked tokens -> template
        self._lines: dict[str, Template] = {}  # raw line -> template (same answer, no masking)
        self._texts: dict[str, Template] = {}  # masked text, before splitting -> template
        self._param_re: dict[int, tuple[int, re.Pattern[str]]] = {}  # id -> (version, regex)
        self.dirty: set[int] = set()  # ids created, widened or counted since `take_dirty`

    # -- mining -----------------------------------------------------------------------------

    def add(self, message: str, ts_ns: int | None = None, n: int = 1,
            last_ns: int | None = None) -> int:
        """The template id of a message (seen `n` times, from `ts_ns` to `last_ns`), creating or
        widening a template as needed."""
        found = self._lines.get(message) or self._lookup(message)
        if ts_ns is None and last_ns is None:
            found.count += n
        else:
            found.touch(ts_ns, n, last_ns)
        self.dirty.add(found.id)
        return found.id

    def _lookup(self, message: str) -> Template:
        """A line not in the raw-line cache: mask it, then try the masked caches, then match.

        The raw-line and masked-text caches only memoise masking, so emptying them never changes
        an answer. The token cache keeps a masked line on the template it first got; emptied,
        such a line is matched again, as after a restart (templates and ids are kept)."""
        text = _masked_text(message)
        found = self._texts.get(text)
        if found is None:
            key = tuple(_tokens(text))
            found = self._cache.get(key)
            if found is None:
                found = self._match(list(key))
                _remember(self._cache, key, found)
            if len(text) <= CACHE_LINE_CHARS:
                _remember(self._texts, text, found)
        if len(message) <= CACHE_LINE_CHARS:
            _remember(self._lines, message, found)
        return found

    def take_dirty(self) -> list[int]:
        """The ids changed since the last call, sorted (what a save must write)."""
        ids = sorted(self.dirty)
        self.dirty.clear()
        return ids

    def reset_counts(self) -> None:
        """Zero every template's counters (before re-assigning all records; ids and text stay)."""
        for tpl in self.templates.values():
            tpl.count, tpl.first_seen, tpl.last_seen = 0, None, None
        self.dirty.update(self.templates)

    def add_all(self, messages: Iterable[str]) -> list[int]:
        """`add` for many messages without timestamps (the loop inlined: it is the hot path)."""
        lines, lookup = self._lines, self._lookup
        ids: list[int] = []
        for message in messages:
            found = lines.get(message) or lookup(message)
            found.count += 1
            ids.append(found.id)
        self.dirty.update(ids)
        return ids

    def _match(self, tokens: list[str]) -> Template:
        first = _head(tokens, 0)
        leaf = self._leaves.setdefault((len(tokens), first, _head(tokens, 1)), [])
        best, best_sim = None, -1.0
        for tpl in leaf:
            sim = self._sim(tpl.tokens, tokens)
            if sim > best_sim:
                best, best_sim = tpl, sim
        if best is not None and best_sim >= self.similarity:
            self._widen(best, tokens)
            return best
        for tpl in self._by_first.get(first, ()):
            if len(tpl.tokens) != len(tokens) and _fits(tpl.tokens, tokens):
                return tpl
        tpl = Template(self._next_id(), list(tokens))
        self._place(tpl)
        return tpl

    @staticmethod
    def _sim(template: list[str], tokens: list[str]) -> float:
        if not tokens:
            return 1.0
        same = 0
        for a, b in zip(template, tokens, strict=True):
            if a == b:
                same += 1
            elif _is_level(a) or _is_level(b):
                return -1.0  # a level is part of the event's identity, never a parameter
        return same / len(tokens)

    def _widen(self, tpl: Template, tokens: list[str]) -> None:
        self.dirty.add(tpl.id)
        changed = False
        for i, (a, b) in enumerate(zip(tpl.tokens, tokens, strict=True)):
            if a != b and a != WILDCARD:
                tpl.tokens[i] = WILDCARD
                changed = True
        if changed:
            tpl.version += 1
            wild = self._by_first.setdefault(_head(tpl.tokens, 0), [])
            if tpl not in wild:
                wild.append(tpl)

    def _place(self, tpl: Template) -> None:
        self.dirty.add(tpl.id)
        self.templates[tpl.id] = tpl
        first = _head(tpl.tokens, 0)
        self._leaves.setdefault((len(tpl.tokens), first, _head(tpl.tokens, 1)), []).append(tpl)
        if WILDCARD in tpl.tokens:
            self._by_first.setdefault(first, []).append(tpl)

    def _next_id(self) -> int:
        return max(self.templates, default=0) + 1

    # -- parameters -------------------------------------------------------------------------

    def parameters(self, template_id: int, message: str) -> list[str]:
        """The values a message puts in its template's `<*>` slots, in order (empty if it does
        not fit, or is longer than MAX_PARAM_CHARS: a bound on regex backtracking)."""
        if len(message) > MAX_PARAM_CHARS:
            return []
        cached = self._param_re.get(template_id)
        tpl = self.templates[template_id]
        if cached is None or cached[0] != tpl.version:  # a widened template needs a new regex
            cached = (tpl.version, param_regex(tpl.text))
            self._param_re[template_id] = cached
        m = cached[1].fullmatch(message)
        return list(m.groups()) if m else []

    def slots(self, template_id: int) -> int:
        """How many `<*>` slots the template has now (its parameters' length)."""
        return self.templates[template_id].text.count(WILDCARD)

    # -- persistence ------------------------------------------------------------------------

    def load(self, rows: Iterable[Sequence[Any]]) -> None:
        """Restore templates from `telltale_log_templates` rows (id, template, token_count, ...)."""
        for tid, text, token_count, first_seen, last_seen, count in rows:
            tokens = text.split(" ") if text else []
            if len(tokens) != token_count:
                raise ValueError(f"log template {tid} is damaged: {token_count} tokens expected")
            self._place(Template(int(tid), tokens, int(count), first_seen, last_seen))

        self.dirty.clear()  # loaded rows are what the table holds

    def rows(self, ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """Rows for `telltale_log_templates` (all, or these ids).

        The stored text keeps every position (no collapsing) so loading restores the leaf exactly."""
        chosen = sorted(self.templates) if ids is None else sorted(ids)
        return [{"id": t.id, "template": " ".join(t.tokens), "token_count": len(t.tokens),
                 "first_seen": t.first_seen, "last_seen": t.last_seen, "count": t.count}
                for t in (self.templates[i] for i in chosen)]

    def signature(self) -> tuple[int, int, int]:
        """(templates, highest id, records counted): what the table's own totals must equal."""
        return (len(self.templates), max(self.templates, default=0),
                sum(t.count for t in self.templates.values()))


def collapse_text(stored: str) -> str:
    """A stored template (every position kept) as shown: runs of `<*>` as one."""
    return " ".join(_collapse(stored.split(" "))) if stored else ""


def param_regex(text: str) -> re.Pattern[str]:
    """A regex whose groups are the values of a (collapsed) template's `<*>` slots in a raw message.

    A token may hold a wildcard inside it (`rhost=<*>`, `[<*>]:`): its constant pieces must match
    literally and the wildcard is a group. Tokens are separated by any whitespace (a multi-line
    record's newlines too), and a lone `<*>` may span several raw tokens (a masked date)."""
    parts = []
    for tok in text.split(" ") if text else []:
        parts.append("(.+?)".join(re.escape(piece) for piece in tok.split(WILDCARD)))
    return re.compile(r"\s*" + r"\s+".join(parts) + r"\s*", re.DOTALL)


