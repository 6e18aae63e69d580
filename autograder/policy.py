"""What graded service code may use: a static check of the learner's cells before they run.

Learner code runs isolated (``autograder.isolation``), so it cannot touch the grader, its
files or its secret. But the evidence of a run (the history, the event log, the spans) is
recorded in the same process as the service, and code that walks from a handle to the
world through private attributes, frames or the garbage collector could rewrite it. A
service has no reason to do any of that, so before a submission's cells run, the grader
refuses code that:

- imports a module outside ``ALLOWED_MODULES`` (the sandbox's public API, FastAPI,
  Starlette, pydantic, AnyIO, OpenTelemetry, prometheus_client, httpx, tenacity, purgatory and the
  plain parts of the standard library), or a private one (``sandbox._runtime``), or a private name from one;
- reads or writes a private attribute (``x._name``) or a dunder outside ``SAFE_DUNDERS``
  (``__class__``, ``__dict__``, ``__globals__``, ``__code__``, ``__subclasses__`` ...), or
  an attribute in ``FORBIDDEN_ATTRIBUTES`` (``sys.modules``, frames);
- calls ``eval``, ``exec``, ``compile``, ``__import__``, ``globals``, ``locals``, ``vars``,
  ``breakpoint`` or ``open`` (files and processes: ``FORBIDDEN_ATTRIBUTES`` too), or ``getattr``/``setattr``/``delattr``/``hasattr`` with a name that is
  not a public string literal;
- formats a string that reads attributes through a private name (``"{0._x}".format``).

``check(source, cell)`` returns the first violation as one line a learner can act on (the
cell, its line, what it used and what to do instead), or ``None``. The labs' own ``check``
and ``grade`` apply it to a service cell too, so a learner meets the rule while working,
not first in their grade. This is a list of known doors, not a proof: what it cannot see,
the process boundary still holds (no secret, no grader files, limits).

Written here: Python has no maintained sandbox for running code in-process (RestrictedPython
rewrites code for a different purpose and would change the semantics of a FastAPI app).
"""

from __future__ import annotations

import ast
import re
import threading

__all__ = ["ALLOWED_MODULES", "FORBIDDEN_ATTRIBUTES", "SAFE_DUNDERS", "check"]

#: Top-level modules (and their public submodules) a graded service may import.
ALLOWED_MODULES = frozenset({
    # the course's stack
    "sandbox", "fastapi", "starlette", "pydantic", "anyio", "opentelemetry", "httpx", "typing_extensions",
    "prometheus_client",  # a service's own metrics (lab 06's breaker gauge), on its replica's registry
    "tenacity", "purgatory",  # retries and a circuit breaker from libraries (lab 06), both on virtual time
    # the plain parts of the standard library
    "__future__", "abc", "array", "asyncio", "base64", "binascii", "bisect", "calendar", "collections",
    "contextlib", "contextvars", "copy", "csv", "dataclasses", "datetime", "decimal", "enum", "fractions",
    "functools", "graphlib", "hashlib", "heapq", "hmac", "html", "http", "io", "ipaddress", "itertools", "json",
    "logging", "math", "numbers", "pprint", "random", "re", "reprlib", "secrets", "statistics", "string",
    "struct", "sys", "textwrap", "time", "traceback", "typing", "unicodedata", "urllib", "uuid", "warnings",
    "zlib", "zoneinfo",
})
#: Of ``urllib``, only the parsing helpers (``urllib.request`` would open sockets behind the sandbox's back).
_ALLOWED_SUBMODULES = {"urllib": {"parse"}}

#: Dunder attributes a service may name (special methods it defines or calls; ``__name__`` for logging).
SAFE_DUNDERS = frozenset({
    "__name__", "__qualname__", "__doc__", "__init__", "__post_init__", "__call__", "__enter__", "__exit__",
    "__aenter__", "__aexit__", "__iter__", "__next__", "__aiter__", "__anext__", "__len__", "__getitem__",
    "__setitem__", "__contains__", "__eq__", "__hash__", "__lt__", "__le__", "__gt__", "__ge__", "__str__",
    "__repr__", "__bool__", "__add__", "__future__",
})
#: Public attribute names that lead out of a service's own objects.
FORBIDDEN_ATTRIBUTES = frozenset({
    "modules", "settrace", "setprofile", "addaudithook", "f_back", "f_globals", "f_locals", "f_builtins",
    "f_code", "gi_frame", "cr_frame", "ag_frame", "tb_frame", "tb_next", "gi_code", "cr_code", "co_code",
    # files and processes are not a service's business (the sandbox gives it a disk and a network)
    "open", "FileIO", "create_subprocess_exec", "create_subprocess_shell", "system", "popen",
})
_FORBIDDEN_CALLS = {
    "eval": "run code you wrote as text",
    "exec": "run code you wrote as text",
    "compile": "run code you wrote as text",
    "__import__": "use an import statement",
    "globals": "use module-level names directly",
    "locals": "use the names directly",
    "vars": "use the attributes by name",
    "breakpoint": "debug in your own notebook",
    "open": "keep files on the replica's disk, sandbox.disk",
}
_NAMED_ACCESS = {"getattr", "setattr", "delattr", "hasattr"}
_PRIVATE_FORMAT = re.compile(r"\{[^{}]*?(\.|\[)\s*_")


def _private(name: str) -> bool:
    if name.startswith("__") and name.endswith("__"):
        return name not in SAFE_DUNDERS
    return name.startswith("_")


#: One ``ast.parse`` at a time. CPython (3.11 here) counts the depth of the AST objects it builds in the interpreter's
#: state, which threads share: when the garbage collector runs a finalizer in the middle of a parse and another thread
#: parses meanwhile (``dojo grade --jobs 2`` checks two submissions at once), the first fails with "SystemError: AST
#: constructor recursion depth mismatch" (CPython gh-106905; test_policy reproduces it).
_PARSING = threading.Lock()


def check(source: str, cell: str = "service cell", *, modules: frozenset[str] = frozenset(),
          attributes: frozenset[str] = frozenset()) -> str | None:
    """The first thing in ``source`` (a learner's ``cell``) that graded code may not do, as one line, or None.
    ``modules`` are allowed besides ``ALLOWED_MODULES`` (lab 04's answer cell reads ``lab``'s helpers);
    ``attributes`` are forbidden besides ``FORBIDDEN_ATTRIBUTES`` (there, the lab's ground truth)."""
    try:
        with _PARSING:
            tree = ast.parse(source)
    except SyntaxError as exc:
        return f"the {cell} is not valid Python: {exc.msg} (line {exc.lineno})"
    for node in ast.walk(tree):
        problem = _problem(node, ALLOWED_MODULES | modules, FORBIDDEN_ATTRIBUTES | attributes)
        if problem is not None:
            line = source.splitlines()[node.lineno - 1].strip() if 0 < node.lineno <= len(source.splitlines()) else ""
            return (f"the {cell}, line {node.lineno} (`{line[:80]}`): {problem}. Graded code may use the sandbox's "
                    f"public API, FastAPI, pydantic, AnyIO, OpenTelemetry, prometheus_client, tenacity, purgatory and "
                    f"the plain standard library, and nothing that reaches into the sandbox or the grader")
    return None


def _problem(node: ast.AST, modules: frozenset[str], attributes: frozenset[str]) -> str | None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            problem = _module_problem(alias.name, modules)
            if problem:
                return problem
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            return "a relative import; a cell is not a package"
        problem = _module_problem(node.module or "", modules)
        if problem:
            return problem
        for alias in node.names:
            if alias.name == "*" or _private(alias.name) or alias.name in attributes:
                return f"`from {node.module} import {alias.name}` takes a private, forbidden or every name; import public names"
            allowed = _ALLOWED_SUBMODULES.get(node.module or "")
            if allowed is not None and alias.name not in allowed:
                return f"`from {node.module} import {alias.name}`: of {node.module}, only {', '.join(sorted(allowed))} is allowed"
    elif isinstance(node, ast.Attribute):
        if _private(node.attr):
            return f"the private attribute `.{node.attr}`; use the public API"
        if node.attr in attributes:
            return f"the attribute `.{node.attr}`, which reaches outside your service"
    elif isinstance(node, ast.Name):
        if node.id in _FORBIDDEN_CALLS:
            return f"`{node.id}` ({_FORBIDDEN_CALLS[node.id]} instead)"
        if node.id == "__builtins__":
            return "`__builtins__`"
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _NAMED_ACCESS:
        name = node.args[1] if len(node.args) > 1 else None
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str) and not _private(name.value)):
            return f"`{node.func.id}` with a name that is not a public string literal; write the attribute out"
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _PRIVATE_FORMAT.search(node.value):
        return "a format string that reads a private attribute"
    return None


def _module_problem(name: str, modules: frozenset[str]) -> str | None:
    parts = name.split(".")
    if parts[0] not in modules:
        return f"`import {name}`: not a module graded code may use"
    if any(_private(p) for p in parts[1:]) or (parts[0] != "__future__" and _private(parts[0])):
        return f"`import {name}`: a private module; use the public API"
    allowed = _ALLOWED_SUBMODULES.get(parts[0])
    if allowed is not None and len(parts) > 1 and parts[1] not in allowed:
        return f"`import {name}`: of {parts[0]}, only {', '.join(sorted(allowed))} is allowed"
    return None
