"""autograder.policy: what graded service code may use. No false positive on any correct fix the course knows
(references, alternatives, generated code, the self-contained mutants), and each known door refused with a line
that names the cell, the line and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.policy import check

ROOT = Path(__file__).resolve().parent.parent
LABS = sorted(p for p in (ROOT / "labs").iterdir() if (p / "lab.py").is_file())
SERVICES = sorted(
    [p for lab in LABS for p in lab.glob("*.py") if p.name not in ("lab.py", "answer.py")]
    + [p for lab in LABS for p in (lab / "alternatives").glob("*.py")]
)


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_reference_alternative_and_generated_service_is_allowed(path):
    assert check(path.read_text()) is None


def test_self_contained_mutants_are_allowed_too():
    """A wrong fix is judged by the checkers, not refused: every mutant that stands alone as a cell passes the
    policy (the others load the reference from its file, which no cell could)."""
    mutants = [p for lab in LABS for p in (lab / "mutants").glob("*.py")]
    standalone = [p for p in mutants if "load_module" not in p.read_text() and "spec_from_file_location" not in p.read_text()]
    assert len(standalone) >= 25
    assert [p.name for p in standalone if check(p.read_text()) is not None] == []


def test_lab_04s_answer_cell_may_read_the_labs_helpers_but_not_its_ground_truth():
    from autograder.labs import load_module

    folder = ROOT / "labs" / "04-tracing"
    lab = load_module(folder, "lab", "chaos_dojo_policy_test.lab04")
    forbidden = frozenset(lab.ANSWER_MAY_NOT_USE)
    answer = (folder / "answer.py").read_text()
    assert check(answer, "answer cell", modules=frozenset({"lab"}), attributes=forbidden) is None
    for cheat in ("import lab\ndef slowest_dependency(world):\n    return lab.culprit(world.seed)[0]\n",
                  "from lab import culprit\n",
                  "import lab\ndef slowest_dependency(world):\n    return next(d for d in lab.DEPENDENCIES if "
                  "lab.answer_is_right(d, 1))\n"):
        assert check(cheat, "answer cell", modules=frozenset({"lab"}), attributes=forbidden) is not None, cheat
    assert "import lab" in check(answer)  # a service cell may not import the lab


@pytest.mark.parametrize(("source", "said"), [
    ("from sandbox._runtime import current_node", "private module"),
    ("import sandbox._runtime", "private module"),
    ("from sandbox.deps import _local_state", "private"),
    ("import sandbox\nx = sandbox._runtime", "private attribute `._runtime`"),
    ("x = ().__class__.__base__.__subclasses__()", "`.__subclasses__`"),
    ("import gc", "`import gc`"),
    ("import inspect", "`import inspect`"),
    ("import ctypes", "`import ctypes`"),
    ("import os", "`import os`"),
    ("import subprocess", "`import subprocess`"),
    ("import importlib", "`import importlib`"),
    ("import urllib.request", "only parse"),
    ("from urllib import request", "only parse"),
    ("import sys\nsys.modules.clear()", "`.modules`"),
    ("import sys\nf = sys._getframe()", "private attribute"),
    ("def f(e):\n    return e.__traceback__", "`.__traceback__`"),
    ("def f(t):\n    return t.tb_frame", "`.tb_frame`"),
    ("exec('x = 1')", "`exec`"),
    ("eval('1')", "`eval`"),
    ("compile('1', 'x', 'eval')", "`compile`"),
    ("__import__('os')", "`__import__`"),
    ("g = globals()", "`globals`"),
    ("v = vars()", "`vars`"),
    ("import sandbox\nx = getattr(sandbox, '_run' + 'time')", "`getattr`"),
    ("import sandbox\nx = getattr(sandbox, '_runtime')", "`getattr`"),
    ("x = '{0._node}'.format(1)", "format string"),
    ("x = '{0[_secret]}'.format({})", "format string"),
    ("open('/etc/passwd')", "`open`"),
    ("import io\nio.open('x')", "`.open`"),
    ("import asyncio\nasyncio.create_subprocess_exec('sh')", "create_subprocess_exec"),
    ("from . import x", "relative import"),
    ("from sandbox import *", "every name"),
    ("def f(:\n    pass", "not valid Python"),
])
def test_each_known_door_is_refused_with_a_line_that_says_which(source, said):
    problem = check(source)
    assert problem is not None and said in problem, problem
    assert problem.startswith("the service cell") and "\n" not in problem


def test_plain_service_code_passes():
    source = '''
import json, logging, random, sys, time, uuid
from dataclasses import dataclass
from urllib.parse import quote
import sandbox
from fastapi import Depends, FastAPI, HTTPException
from opentelemetry import trace

log = logging.getLogger(__name__)


class Box:
    def __init__(self):
        self.items = {}

    def __len__(self):
        return len(self.items)


def create_app():
    app = FastAPI()

    @app.get("/x")
    async def x(db: sandbox.Database = Depends(sandbox.database("db"))):
        print("hi", file=sys.stderr)
        return {"ok": getattr(db, "name", None), "k": "{0}".format(quote("a b"))}

    return app
'''
    assert check(source) is None


def test_a_learner_meets_the_rule_while_working_not_first_in_their_grade():
    """A service cell the grader would refuse runs in the learner's own notebook (it is theirs to try), with a
    warning that says what grading will refuse; lab.grade refuses it as grading does."""
    import linecache
    import warnings

    from autograder.labs import GradingWarning, grader, service_factory
    from sandbox.explore import Passed

    source = "import os\n\n\ndef create_app():\n    return None\n"
    filename = "<policy-test-cell>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    with pytest.warns(GradingWarning, match="grading will refuse this service: .*`import os`"):
        service_factory(namespace["create_app"])
    grade = grader(lambda *args, **kwargs: Passed(), lab="02-idempotency")
    with warnings.catch_warnings(), pytest.raises(AssertionError, match="Refused, as grading will refuse it"):
        warnings.simplefilter("ignore")
        grade(namespace["create_app"])


def test_a_service_may_record_its_own_metrics_with_prometheus_client():
    """Lab 06 asks for a circuit_breaker_state gauge: prometheus_client is allowed, its private parts are not."""
    cell = ("from prometheus_client import Counter, Gauge\n\ndef create_app():\n"
            "    return Gauge('circuit_breaker_state', 'state', ['dependency'])\n")
    assert check(cell) is None
    refused = check("from prometheus_client import _sliding\n")
    assert refused is not None and "_sliding" in refused


def test_submissions_checked_at_once_in_threads_all_get_their_verdict():
    """``dojo grade --jobs 2`` checks submissions in threads. A finalizer that the garbage collector runs in the
    middle of one thread's parse lets another thread parse meanwhile, which made CPython's AST builder fail with
    "SystemError: AST constructor recursion depth mismatch" (gh-106905): three threads checking at once, each
    with such garbage pending at every parse, all get the verdict a lone check gives."""
    import gc
    import threading
    import time

    source = (ROOT / "labs" / "02-idempotency" / "solution.py").read_text()
    refused = source + "\nimport os\n"
    expected = {source: check(source), refused: check(refused)}
    assert expected[source] is None and "import os" in expected[refused]

    class Pending:
        def __del__(self):
            time.sleep(0)  # run by the collector inside a parse: another thread runs here

    got: list[object] = []

    def checking() -> None:
        for i in range(12):
            for _ in range(20):
                cycle = Pending()
                cycle.me = cycle
            del cycle
            text = refused if i % 2 else source
            try:
                got.append(check(text) == expected[text])
            except SystemError as exc:
                got.append(exc)

    thresholds = gc.get_threshold()
    gc.set_threshold(50, 5, 5)
    try:
        threads = [threading.Thread(target=checking) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.set_threshold(*thresholds)
    assert got == [True] * 36, [g for g in got if g is not True][:3]
