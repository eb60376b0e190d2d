"""Handlers in a source tree: what `coverage` matches spans against.

Python is parsed with `ast`: every function and method by qualified name (module path from
the tree's root, then classes), and the routes declared by decorators (`@app.get("/x")`,
`@app.route("/x", methods=[...])`, `@router.post(...)`, with an `APIRouter(prefix=...)` /
`Blueprint(url_prefix=...)` of the same module applied) or by route tables (Django
`path("x/<int:id>/", view)`, Starlette `Route("/x", endpoint)`, `add_url_rule`,
`add_api_route`). Other languages are read with regexes, per file glob: a named group `route`
(or `name` for a function) and optionally `method`.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE")
_DEFAULT_GET = ("GET", "HEAD")  # Flask/Starlette/FastAPI routes without methods=
_ANY_ROUTE_DECORATORS = {"route", "api_route", "websocket", "websocket_route"}
_ROUTE_TABLES = {"path", "re_path", "url", "Route", "WebSocketRoute"}  # (route, view, ...)
_ADD_ROUTE = {"add_url_rule", "add_api_route", "add_route"}
_SKIP_DIRS = {".git", ".hg", "node_modules", "__pycache__", ".venv", "venv", ".tox", "dist",
              "build", ".mypy_cache", ".ruff_cache", "site-packages", "vendor", "target"}
_MAX_FILE_BYTES = 2 << 20  # bigger files are generated bundles, not handlers


class HandlerKind(StrEnum):
    ROUTE = "route"
    FUNCTION = "function"


@dataclass(frozen=True)
class Handler:
    kind: HandlerKind
    file: str  # relative to the scanned root, '/'-separated
    line: int
    function: str = ""  # qualified name; '' when only a route is known
    route: str = ""  # as declared (router prefix applied); '' for functions
    methods: tuple[str, ...] = ()  # () = any method
    language: str = "python"


@dataclass(frozen=True)
class Pattern:
    """Handlers found by a regex in files whose name matches one of `globs`."""

    globs: tuple[str, ...]
    regex: re.Pattern[str]
    language: str

    @classmethod
    def parse(cls, text: str) -> Pattern:
        """`GLOB[,GLOB...]=REGEX`, the regex having a named group `route` or `name`."""
        globs, sep, regex = text.partition("=")
        if not sep or not globs or not regex:
            raise ValueError(f"--pattern {text!r}: write GLOB=REGEX, e.g. '*.rb=get \"(?P<route>/[^\"]*)\"'")
        return cls.of(tuple(g.strip() for g in globs.split(",")), regex, globs)

    @classmethod
    def of(cls, globs: tuple[str, ...], regex: str, language: str) -> Pattern:
        try:
            compiled = re.compile(regex, re.MULTILINE)
        except re.error as exc:
            raise ValueError(f"pattern for {','.join(globs)}: bad regex: {exc}") from exc
        if not {"route", "name"} & set(compiled.groupindex):
            raise ValueError(f"pattern for {','.join(globs)}: the regex needs a named group "
                             "(?P<route>...) or (?P<name>...)")
        return cls(globs, compiled, language)

    def applies(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, g) for g in self.globs)


_JS = ("*.js", "*.mjs", "*.cjs", "*.jsx", "*.ts", "*.tsx")
# Route strings start with '/', so client calls to absolute URLs are not taken for handlers.
DEFAULT_PATTERNS: tuple[Pattern, ...] = (
    Pattern.of(_JS, r"""\b(?:app|server|api|routes|\w*[rR]outer)\s*\.\s*"""
               r"""(?P<method>get|post|put|delete|patch|head|options|all)\(\s*"""
               r"""(?P<q>['"`])(?P<route>/[^'"`]*)(?P=q)""", "javascript"),
    Pattern.of(("*.go",), r"""\bHandle(?:Func)?\(\s*"(?P<route>[^"]+)"\s*,\s*(?P<name>[A-Za-z_][\w.]*)?""",
               "go"),
    Pattern.of(("*.go",), r"""\.(?P<method>GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS|Get|Post|Put"""
               r"""|Delete|Patch|Head|Options)\(\s*"(?P<route>/[^"]*)\"""", "go"),
    Pattern.of(("*.java", "*.kt"), r"""@(?P<method>Get|Post|Put|Delete|Patch|Request)Mapping\(\s*"""
               r"""(?:(?:value|path)\s*=\s*)?\{?\s*"(?P<route>[^"]*)\"""", "java"),
)


@dataclass
class CodeScan:
    root: str
    handlers: list[Handler]
    files: int  # files read (Python, or matching a pattern)
    unparsable: list[str]  # Python files with syntax errors, relative paths


def scan(root: Path | str, patterns: list[Pattern] | tuple[Pattern, ...] = DEFAULT_PATTERNS) -> CodeScan:
    """Every handler under `root`, in file then line order."""
    root = Path(root)
    found: list[Handler] = []
    files = 0
    unparsable: list[str] = []
    for path in _files(root):
        rel = path.relative_to(root).as_posix()
        chosen = [p for p in patterns if p.applies(path.name)]
        if path.suffix != ".py" and not chosen:
            continue
        try:
            if path.stat().st_size > _MAX_FILE_BYTES:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        files += 1
        if path.suffix == ".py":
            try:
                found += _PythonModule(rel, text).handlers()
            except (SyntaxError, ValueError):
                unparsable.append(rel)
        for pattern in chosen:
            found += _regex_handlers(rel, text, pattern)
    found.sort(key=lambda h: (h.file, h.line, h.kind, h.route, h.function))
    return CodeScan(str(root), _without_route_functions(found), files, unparsable)


def _without_route_functions(found: list[Handler]) -> list[Handler]:
    """A function some route table names is reported as that route, not twice."""
    views = {h.function for h in found if h.kind is HandlerKind.ROUTE and h.function}
    return [h for h in found if h.kind is HandlerKind.ROUTE
            or not any(h.function == v or h.function.endswith("." + v) for v in views)]


def _files(root: Path) -> list[Path]:
    out: list[Path] = []
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        out += [Path(here) / n for n in sorted(names)]
    return out


def _regex_handlers(rel: str, text: str, pattern: Pattern) -> list[Handler]:
    out: list[Handler] = []
    groups = pattern.regex.groupindex
    for m in pattern.regex.finditer(text):
        route = (m.group("route") or "") if "route" in groups else ""
        name = (m.group("name") or "") if "name" in groups else ""
        method = ((m.group("method") or "") if "method" in groups else "").upper()
        methods: tuple[str, ...] = (method,) if method in HTTP_METHODS else ()
        verb, _, rest = route.partition(" ")  # Go 1.22 patterns: "GET /users/{id}"
        if verb.upper() in HTTP_METHODS and rest.startswith("/"):
            methods, route = (verb.upper(),), rest.strip()
        if not route and not name:
            continue
        # The line of what was found, not of the match start (a leading \s* spans lines).
        at = m.start("route") if route and "route" in groups else m.start("name") if name else m.start()
        line = text.count("\n", 0, at) + 1
        kind = HandlerKind.ROUTE if route else HandlerKind.FUNCTION
        out.append(Handler(kind, rel, line, name, route, methods, pattern.language))
    return out


def _module_name(rel: str) -> str:
    parts = rel[:-3].split("/")
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _dotted(node: ast.expr) -> str:
    """`views.user_detail` for an attribute chain; the class for `View.as_view()`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    if isinstance(node, ast.Call):
        inner = _dotted(node.func)
        return inner.removesuffix(".as_view")
    return ""


def _string(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _keyword(call: ast.Call, *names: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg in names), None)


def _methods(call: ast.Call, default: tuple[str, ...]) -> tuple[str, ...]:
    node = _keyword(call, "methods")
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        found = tuple(s.upper() for s in (_string(e) for e in node.elts) if s)
        return found or default
    return default


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


class _PythonModule(ast.NodeVisitor):
    def __init__(self, rel: str, text: str) -> None:
        self.rel = rel
        self.module = _module_name(rel)
        self.tree = ast.parse(text, filename=rel)
        self.stack: list[str] = []
        self.out: list[Handler] = []
        self.prefixes: dict[str, str] = {}  # router variable → its prefix
        self.defined: dict[str, str] = {}  # module-level function name → qualified name

    def qual(self, name: str) -> str:
        return ".".join([self.module, *self.stack, name]) if self.module else ".".join([*self.stack, name])

    def handlers(self) -> list[Handler]:
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                prefix = _string(_keyword(node.value, "prefix", "url_prefix"))
                for target in node.targets:
                    if prefix is not None and isinstance(target, ast.Name):
                        self.prefixes[target.id] = prefix
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.defined[node.name] = self.qual(node.name)
        self.visit(self.tree)
        return self.out

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        qual = self.qual(node.name)
        routes = [r for r in (self.decorator_route(d) for d in node.decorator_list) if r]
        for route, methods in routes:
            self.out.append(Handler(HandlerKind.ROUTE, self.rel, node.lineno, qual, route, methods))
        if not routes:
            self.out.append(Handler(HandlerKind.FUNCTION, self.rel, node.lineno, qual))
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def decorator_route(self, dec: ast.expr) -> tuple[str, tuple[str, ...]] | None:
        if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)):
            return None
        verb = dec.func.attr
        if verb.upper() in HTTP_METHODS and verb.islower():
            methods: tuple[str, ...] = (verb.upper(),)
        elif verb in _ANY_ROUTE_DECORATORS:
            methods = () if verb.startswith("websocket") else _methods(dec, _DEFAULT_GET)
        else:
            return None
        route = _string(dec.args[0] if dec.args else _keyword(dec, "path", "rule"))
        owner = dec.func.value
        prefix = self.prefixes.get(owner.id, "") if isinstance(owner, ast.Name) else ""
        # A bare string that is not a path (cache.get("key")) is no route.
        if route is None or not (route.startswith("/") or (prefix and route == "")):
            return None
        return prefix + route, methods

    def visit_Call(self, node: ast.Call) -> None:
        callee = _callee(node)
        route = _string(node.args[0] if node.args else _keyword(node, "path", "rule"))
        view: ast.expr | None = None
        methods: tuple[str, ...] = ()
        if callee in _ROUTE_TABLES and route is not None:
            view = node.args[1] if len(node.args) > 1 else _keyword(node, "endpoint", "view")
            if callee in ("Route",):
                methods = _methods(node, ())
        elif callee in _ADD_ROUTE and route is not None:
            rest = node.args[1:]
            if callee == "add_url_rule":  # (rule, endpoint name, view_func)
                view = _keyword(node, "view_func") or (rest[1] if len(rest) > 1 else None)
            else:
                view = _keyword(node, "endpoint") or (rest[0] if rest else None)
            methods = _methods(node, _DEFAULT_GET)
        # include("app.urls") and other calls are route tables of their own, not handlers.
        name = _dotted(view) if view is not None else ""
        if name and not (isinstance(view, ast.Call) and _callee(view) == "include"):
            owner = node.func.value if isinstance(node.func, ast.Attribute) else None
            prefix = self.prefixes.get(owner.id, "") if isinstance(owner, ast.Name) else ""
            self.out.append(Handler(HandlerKind.ROUTE, self.rel, node.lineno,
                                    self.defined.get(name, name), prefix + (route or "") or "/",
                                    methods))
        self.generic_visit(node)
