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
An exact-line cache makes repeated masked lines (most of any log) a dict lookup.
Templates only widen; ids are assigned once, so persisted ids survive later ingests."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from telltale.store import Store
from telltale.store import log_templates_sql as sql

WILDCARD = "<*>"
SIMILARITY = 0.7  # one configuration for every log: share of a line's tokens that must agree

LEVELS = frozenset({"TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "WARNING", "ERROR", "ERR",
                    "CRIT", "CRITICAL", "FATAL", "SEVERE", "ALERT", "EMERG", "EMERGENCY"})

# Ordered passes, each guarded by a cheap substring test (regex scanning dominates the cost):
# a timestamp inside a message, URLs, absolute paths, then everything from a digit on (ids,
# numbers, IPs with ports, durations like 12ms, versions, UUIDs, hex). Masking from the first
# digit keeps a token's key and punctuation (`rhost=<*>`, `[<*>]:`, `blk_-<*>`): those are part
# of the event's identity, and a scanner that only starts at digits is several times faster.
_DATE = re.compile(r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct"
                   r"|Nov|Dec) +\d{1,2} \d\d:\d\d:\d\d(?: \d{4})?")
_URL = re.compile(r"[a-zA-Z][\w+.-]*://[^\s\"'<>]+")
_PATH = re.compile(r"(?<![\w<>])/[^\s,;'\"()\[\]]*")
_DIGITS = re.compile(r"\d[\w.:+@-]*")
_MASKS = [(":", _DATE), ("://", _URL), ("/", _PATH), ("", _DIGITS)]


def mask(message: str) -> list[str]:
    """The masked tokens of a message: variables become `<*>`, runs of them one `<*>`."""
    for guard, pattern in _MASKS:
        if guard in message:
            message = pattern.sub(WILDCARD, message)
    out: list[str] = []
    for tok in message.split():
        if tok == WILDCARD and out and out[-1] == WILDCARD:
            continue
        out.append(tok)
    return out


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

    @property
    def text(self) -> str:
        return " ".join(_collapse(self.tokens))

    def touch(self, ts_ns: int | None) -> None:
        self.count += 1
        if ts_ns is not None:
            self.first_seen = ts_ns if self.first_seen is None else min(self.first_seen, ts_ns)
            self.last_seen = ts_ns if self.last_seen is None else max(self.last_seen, ts_ns)


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
        self._cache: dict[tuple[str, ...], Template] = {}

    # -- mining -----------------------------------------------------------------------------

    def add(self, message: str, ts_ns: int | None = None) -> int:
        """The template id of a message, creating or widening a template as needed."""
        tokens = mask(message)
        key = tuple(tokens)
        found = self._cache.get(key)
        if found is None:
            found = self._match(tokens)
            self._cache[key] = found
        found.touch(ts_ns)
        return found.id

    def add_all(self, messages: Iterable[str]) -> list[int]:
        return [self.add(m) for m in messages]

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
        changed = False
        for i, (a, b) in enumerate(zip(tpl.tokens, tokens, strict=True)):
            if a != b and a != WILDCARD:
                tpl.tokens[i] = WILDCARD
                changed = True
        if changed:
            wild = self._by_first.setdefault(_head(tpl.tokens, 0), [])
            if tpl not in wild:
                wild.append(tpl)

    def _place(self, tpl: Template) -> None:
        self.templates[tpl.id] = tpl
        first = _head(tpl.tokens, 0)
        self._leaves.setdefault((len(tpl.tokens), first, _head(tpl.tokens, 1)), []).append(tpl)
        if WILDCARD in tpl.tokens:
            self._by_first.setdefault(first, []).append(tpl)

    def _next_id(self) -> int:
        return max(self.templates, default=0) + 1

    # -- parameters -------------------------------------------------------------------------

    def parameters(self, template_id: int, message: str) -> list[str]:
        """The values a message puts in its template's `<*>` slots (empty if it no longer fits)."""
        tpl = self.templates[template_id]
        parts = [r"(.+?)" if t == WILDCARD else re.escape(t) for t in _collapse(tpl.tokens)]
        # Constant tokens may themselves have been masked pieces; match on the raw message.
        m = re.fullmatch(r"\s*" + r"\s+".join(parts) + r"\s*", message)
        return list(m.groups()) if m else []

    # -- persistence ------------------------------------------------------------------------

    def load(self, rows: Iterable[Sequence[Any]]) -> None:
        """Restore templates from `telltale_log_templates` rows (id, template, token_count, ...)."""
        for tid, text, token_count, first_seen, last_seen, count in rows:
            tokens = text.split(" ") if text else []
            if len(tokens) != token_count:
                raise ValueError(f"log template {tid} is damaged: {token_count} tokens expected")
            self._place(Template(int(tid), tokens, int(count), first_seen, last_seen))

    def rows(self) -> list[dict[str, Any]]:
        # The stored text keeps every position (no collapsing) so loading restores the leaf exactly.
        return [{"id": t.id, "template": " ".join(t.tokens), "token_count": len(t.tokens),
                 "first_seen": t.first_seen, "last_seen": t.last_seen, "count": t.count}
                for t in sorted(self.templates.values(), key=lambda t: t.id)]


def load_miner(store: Store) -> TemplateMiner:
    """A miner holding the store's persisted templates (none yet: an empty miner)."""
    miner = TemplateMiner()
    if store.query(sql.EXISTS)[0][0]:
        miner.load(store.query(sql.LOAD))
    return miner


def save_miner(store: Store, miner: TemplateMiner) -> None:
    """Persist every template (widened text and counters; ids never change). Needs a writable store."""
    store.con.execute(sql.CREATE)
    for row in miner.rows():
        store.con.execute(sql.UPSERT, row)
