"""The ``dojo`` command: run a scenario in the terminal, or open the course in JupyterLab.

Usage::

    dojo run order-system --seed 7          # run a scenario, print what went wrong
    dojo run order-system --seed 7 --no-faults --clients 1
    dojo explore order-system --find double-charge   # search seeds under faults, shrink, print the replay
    dojo explore order-system --find negative-stock --seeds 50 --picture broken.png
    dojo course                             # JupyterLab on course/00-start-here.ipynb
    dojo course --no-browser --port 8899    # on a server: open the printed URL yourself
    dojo --version

Every report prints its seed and the one line that replays it exactly. Exit codes:
0 success, 1 a run or JupyterLab failed, 2 a usage error (an unknown scenario, a
bad value), with a one-line message that says what to do.
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from ._determinism import FIXED_HASH_SEED
from .errors import SandboxError

#: The course's first notebook, relative to the repository root.
START_NOTEBOOK = Path("course") / "00-start-here.ipynb"
#: The course's Jupyter contents manager (sandbox/course_contents.py), named, not imported: Jupyter imports it.
COURSE_CONTENTS_MANAGER = "sandbox.course_contents.CourseContentsManager"


@dataclass(frozen=True)
class Scenario:
    """A runnable example: its name on the command line, what it is, and how to run it."""

    name: str
    summary: str
    run: Callable[..., Any]


def _run_order_system(**kwargs: Any) -> Any:
    from .examples import order_system  # imported on use: `dojo --help` stays fast

    return order_system.run(**kwargs)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "order-system",
            "orders, inventory, payments and email over Kafka, as an AI assistant writes them",
            _run_order_system,
        ),
    ]
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump) and exit with code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; use a seed like 7") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; use a seed >= 0, like 7")
    return value


def _positive(what: str, example: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; use {what} like {example}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{value} is too small; use {what} >= 1, like {example}")
        return value

    return parse


def _port(text: str) -> int:
    value = _positive("a port", 8888)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port; use one from 1 to 65535, like 8888")
    return value


def _version() -> str:
    try:
        return metadata.version("chaos-dojo")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``dojo`` argument parser, with its ``run`` and ``course`` commands."""
    parser = _Parser(prog="dojo", description="Chaos Dojo: distributed systems that survive failure, hands on.")
    parser.add_argument("--version", action="version", version=f"dojo (chaos-dojo) {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    known = "\n".join(f"  {s.name:<16} {s.summary}" for s in SCENARIOS.values())
    run = commands.add_parser(
        "run",
        help="run a scenario in the simulated datacenter and print its report",
        description=f"Run a scenario and print what happened.\n\nscenarios:\n{known}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("scenario", metavar="SCENARIO", help="which scenario: " + ", ".join(SCENARIOS))
    run.add_argument("--seed", type=_seed, default=7, help="the run's seed; the same seed replays the same run (default 7)")
    run.add_argument("--clients", type=_positive("a number of clients", 8), default=8, help="how many customers (default 8)")
    run.add_argument("--no-faults", dest="faults", action="store_false", help="a perfect network: the happy path")
    run.add_argument("--tracing", action="store_true", help="record OpenTelemetry spans of every request")

    explore = commands.add_parser(
        "explore",
        help="search seeds under a nemesis for a broken invariant, shrink it, print how to replay it",
        description="Run a scenario over many seeds, each under faults drawn from its seed; stop at the first "
        "broken invariant, shrink it to the fewest faults and the smallest workload, and print it with a "
        "one-line replay.",
    )
    explore.add_argument("scenario", metavar="SCENARIO", help="which scenario: " + ", ".join(SCENARIOS))
    explore.add_argument("--find", required=True, metavar="INVARIANT",
                         help="the broken promise to look for (order-system: double-charge, negative-stock, money)")
    explore.add_argument("--seeds", type=_positive("a number of seeds", 200), default=200,
                         help="how many seeds to try, from 0 (default 200)")
    explore.add_argument("--no-faults", dest="faults", action="store_false", help="seeds only, no fault schedule")
    explore.add_argument("--picture", metavar="FILE", default=None,
                         help="also draw the counterexample (sequence diagram and faults) to FILE.png or FILE.svg")

    grade = commands.add_parser(
        "grade",
        help="grade submitted lab notebooks, each in an isolated process, without an nbgrader course",
        description="Grade each submitted notebook of a lab (or every notebook under a folder): its service cell "
        "runs in a locked-down process on the hidden runs of the grading secret (CHAOS_DOJO_GRADING_SECRET), "
        "the graded parts are judged here; one JSON result and one HTML feedback page per submission.",
    )
    grade.add_argument("submissions", metavar="SUBMISSION", nargs="+", type=Path,
                       help="a submitted .ipynb, or a folder of them")
    grade.add_argument("--lab", required=True, help="which lab, e.g. 02-idempotency")
    grade.add_argument("--out", type=Path, default=Path("graded"), help="where the JSON results go (default graded/)")
    grade.add_argument("--jobs", type=_positive("a number of submissions at once", 2), default=2,
                       help="submissions graded at once (default 2)")
    grade.add_argument("--time-limit", type=_positive("a number of seconds", 300), default=300, metavar="SECONDS",
                       help="real seconds one submission's process may run (default 300)")
    grade.add_argument("--memory-limit", type=_positive("a number of MiB", 3072), default=3072, metavar="MIB",
                       help="MiB of memory each of its processes may map (default 3072)")
    grade.add_argument("--no-pictures", dest="pictures", action="store_false",
                       help="feedback pages without the counterexample pictures (faster)")
    grade.add_argument("--cluster", metavar="ADDRESS", default=None,
                       help="grade on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://10.0.0.5:8786; "
                       "its workers run the course's environment) instead of here; --jobs is then the cluster's")

    course = commands.add_parser(
        "course",
        help="open the course in JupyterLab",
        description=f"Start JupyterLab on {START_NOTEBOOK.as_posix()}, with the repository as its root folder.",
    )
    course.add_argument("--no-browser", action="store_true", help="do not open a browser; JupyterLab prints the URL")
    course.add_argument("--port", type=_port, default=None, help="the port JupyterLab listens on (default: its own, 8888)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dojo`` command with ``argv`` (default: the process's arguments); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command == "run":
        return _run(args)
    if args.command == "explore":
        return _explore(args)
    if args.command == "course":
        return _course(args)
    if args.command == "grade":
        return _grade(args)
    print(
        "dojo: error: choose a command: `dojo run SCENARIO`, `dojo explore SCENARIO --find ...`, `dojo grade ...` "
        "or `dojo course` "
        "(see `dojo --help`)",
        file=sys.stderr,
    )
    return 2


def _grade(args: argparse.Namespace) -> int:
    root = find_repository()
    if root is None:
        print("dojo grade: error: run it inside the course's repository (it holds labs/)", file=sys.stderr)
        return 2
    from autograder.isolation import Limits
    from autograder.submissions import grade_command

    try:
        limits = Limits(wall=float(args.time_limit), memory=args.memory_limit * 1024**2)
    except ValueError as exc:
        print(f"dojo grade: error: {exc}", file=sys.stderr)
        return 2
    return grade_command(args.submissions, args.lab, args.out, jobs=args.jobs, labs_root=root / "labs",
                         limits=limits, pictures=args.pictures, cluster=args.cluster)


def _unknown(command: str, what: str, name: str, known: Sequence[str]) -> int:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    print(f"dojo {command}: error: unknown {what} {name!r}; known: {', '.join(known)}{hint}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    scenario = SCENARIOS.get(args.scenario)
    if scenario is None:
        return _unknown("run", "scenario", args.scenario, list(SCENARIOS))
    try:
        report = scenario.run(seed=args.seed, clients=args.clients, faults=args.faults, tracing=args.tracing)
    except SandboxError as exc:
        print(f"dojo run: error: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


def _explore(args: argparse.Namespace) -> int:
    if args.scenario not in SCENARIOS:
        return _unknown("explore", "scenario", args.scenario, list(SCENARIOS))
    from .examples import order_system
    from .explore import Counterexample, explore

    invariants = order_system.invariants()
    if args.find not in invariants:
        return _unknown("explore", "invariant", args.find, list(invariants))
    if args.picture is not None and Path(args.picture).suffix.lower() not in (".png", ".svg"):
        print(f"dojo explore: error: --picture {args.picture!r}: name a .png or .svg file", file=sys.stderr)
        return 2
    schedules = order_system.nemesis if args.faults else None
    print(f"Exploring {args.scenario}: seeds 0..{args.seeds - 1}, looking for {args.find} ...", flush=True)
    result = explore(order_system.scenario, [invariants[args.find]], seeds=range(args.seeds), schedules=schedules)
    print(result)
    if isinstance(result, Counterexample) and args.picture is not None:
        from . import viz

        viz.save(result.picture(), args.picture)
        print(f"Picture: {args.picture}")
    return 0


# --- the course ----------------------------------------------------------------------------


def find_repository(start: Path | None = None) -> Path | None:
    """The Chaos Dojo checkout holding the course, or None if there is none to be found.

    Looks in ``start`` (default: the current directory) and its parents first, so
    that the checkout you are in wins; then beside the installed ``sandbox``
    package (an editable install, or Binder).
    """
    cwd = (start or Path.cwd()).resolve()
    beside_package = Path(__file__).resolve().parent.parent
    for candidate in (cwd, *cwd.parents, beside_package):
        if (candidate / START_NOTEBOOK).is_file():
            return candidate
    return None


def browser_available() -> bool:
    """Whether Python's ``webbrowser`` can open a page here (False on a headless server)."""
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def course_command(
    root: Path, *, no_browser: bool = False, port: int | None = None, allow_root: bool = False
) -> list[str]:
    """The argv that starts JupyterLab on the course's first notebook, rooted at ``root``.

    Run it with ``cwd=root``: the notebook path is relative to the repository.
    ``allow_root`` lets JupyterLab run as root, which it refuses by default; in a
    container (Docker, some CI images) root is usually the only user there is.

    Example::

        course_command(Path("chaos-dojo"), no_browser=True, port=8899)
        # [sys.executable, '-m', 'jupyterlab', 'course/00-start-here.ipynb',
        #  '--ServerApp.root_dir=chaos-dojo',
        #  '--LabApp.default_url=/lab/tree/course/00-start-here.ipynb',
        #  '--LabApp.app_settings_dir=chaos-dojo/binder/jupyterlab',
        #  '--ServerApp.contents_manager_class=sandbox.course_contents.CourseContentsManager',
        #  '--ServerApp.log_level=WARN', '--LabApp.log_level=WARN', '--no-browser', '--port=8899']
    """
    notebook = START_NOTEBOOK.as_posix()
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        notebook,
        f"--ServerApp.root_dir={root}",
        # The URL JupyterLab prints (when it cannot open a browser) leads straight to the notebook.
        f"--LabApp.default_url=/lab/tree/{notebook}",
        # The course's JupyterLab settings (binder/jupyterlab/overrides.json): no news or update pop-ups.
        f"--LabApp.app_settings_dir={root / 'binder' / 'jupyterlab'}",
        # Notebooks are served with the kernel's language_info, so none shows as modified once its kernel starts.
        f"--ServerApp.contents_manager_class={COURSE_CONTENTS_MANAGER}",
        # Warnings and the URL only (JupyterLab prints the URL at the critical level).
        "--ServerApp.log_level=WARN",
        "--LabApp.log_level=WARN",
    ]
    if no_browser:
        argv.append("--no-browser")
    if port is not None:
        argv.append(f"--port={port}")
    if allow_root:
        argv.append("--allow-root")
    return argv


def course_environment() -> dict[str, str]:
    """The environment JupyterLab runs in: this one, with this Python's scripts first on ``PATH``.

    ``.venv/bin/dojo course`` works without activating the venv, but what JupyterLab starts
    must still find the venv's tools: nbgrader's formgrader runs ``alembic`` to set up its
    gradebook, and would otherwise fail with "No such file or directory: 'alembic'".

    Its kernels hash strings with the course's fixed seed (``PYTHONHASHSEED=0``), as the grader's processes do,
    so that a set of strings iterates in the same order in a learner's notebook and under the grader.
    """
    scripts = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {**os.environ, "PATH": scripts + (os.pathsep + path if path else ""), "PYTHONHASHSEED": FIXED_HASH_SEED}


def _course(args: argparse.Namespace) -> int:
    root = find_repository()
    if root is None:
        print(
            f"dojo course: error: cannot find {START_NOTEBOOK.as_posix()}; run `dojo course` inside a checkout "
            f"of the Chaos Dojo repository (git clone it, then `pip install -e .`)",
            file=sys.stderr,
        )
        return 1
    no_browser = args.no_browser or not browser_available()
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    argv = course_command(root, no_browser=no_browser, port=args.port, allow_root=as_root)
    try:
        return subprocess.call(argv, cwd=root, env=course_environment())
    except KeyboardInterrupt:  # Ctrl-C stops JupyterLab: a normal way to leave
        return 0
    except OSError as exc:
        print(f"dojo course: error: could not start JupyterLab ({exc}); is it installed? pip install jupyterlab", file=sys.stderr)
        return 1
