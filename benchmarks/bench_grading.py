"""How long grading takes: 1 and N lab submissions, with ``dojo grade`` and with ``nbgrader autograde``, in one run.

The submissions are lab 02 notebooks (the release with its service cell replaced), cycling
through what a class hands in: the reference solution, the generated code, the correct
alternatives and every self-contained partial fix (mutant). For each of 1 and ``--many``
(default 100) submissions, in a fresh temporary folder:

- ``dojo grade`` (``--jobs 2``, pictures on, as an instructor runs it);
- ``nbgrader autograde`` on a temporary course holding lab 02 (one student per submission);

timed with the real clock, with a grading secret of the benchmark's own. For ``dojo grade``
it also samples the grader process's resident memory (``/proc/PID/status``) while it runs:
its peak over the first tenth of the submissions and over all of them (flat means no leak).
It checks that both tools gave every submission the same points. The baseline is one
submission with the same tool: the table gives seconds per submission and the ratio N/1.

    python benchmarks/bench_grading.py              # 1 and 100 submissions: about 25 minutes on two cores
    python benchmarks/bench_grading.py --many 10    # a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "labs" / "02-idempotency"
BIN = Path(sys.executable).parent
SECRET = "bench-grading-secret"


def sources() -> list[tuple[str, str]]:
    """(name, service cell) for each kind of submission, in the order the class cycles through them."""
    found = [("reference", (LAB / "solution.py").read_text()), ("generated", (LAB / "generated.py").read_text())]
    for kind in ("alternatives", "mutants"):
        for path in sorted((LAB / kind).glob("*.py")):
            text = path.read_text()
            if "load_module" not in text and "spec_from_file_location" not in text:
                found.append((f"{kind[:-1]}-{path.stem}", text))
    return found


def write_submissions(folder: Path, count: int) -> list[str]:
    """``count`` submissions as ``folder/<student>/02-idempotency/lab.ipynb``; their student names."""
    kinds = sources()
    nb = nbformat.read(LAB / "lab.ipynb", as_version=4)
    service = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "service")
    students = []
    for i in range(count):
        name, source = kinds[i % len(kinds)]
        student = f"s{i:03d}-{name}"
        service.source = source
        target = folder / student / LAB.name
        target.mkdir(parents=True)
        nbformat.write(nb, target / "lab.ipynb")
        students.append(student)
    return students


def _rss_sampler(pid: int, count: int, out: Path, samples: list[tuple[int, int]]) -> threading.Thread:
    """Sample the process's resident memory (KiB) with how many results it has written, until it ends."""

    def run() -> None:
        status = Path(f"/proc/{pid}/status")
        while True:
            try:
                text = status.read_text()
            except OSError:
                return
            rss = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:")), 0)
            samples.append((len(list(out.glob("*.json"))) if out.exists() else 0, rss))
            time.sleep(0.5)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def dojo_grade(tmp: Path, count: int) -> tuple[float, dict[str, float], list[tuple[int, int]]]:
    submitted = tmp / "submitted"
    students = write_submissions(submitted, count)
    out = tmp / "graded"
    env = {**os.environ, "CHAOS_DOJO_GRADING_SECRET": SECRET}
    started = time.perf_counter()
    process = subprocess.Popen([str(BIN / "dojo"), "grade", str(submitted), "--lab", LAB.name, "--out", str(out),
                                "--jobs", "2"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    samples: list[tuple[int, int]] = []
    sampler = _rss_sampler(process.pid, count, out, samples)
    process.wait()
    took = time.perf_counter() - started
    sampler.join(timeout=2)
    if process.returncode != 0:
        raise SystemExit(f"dojo grade failed with {process.returncode}")
    points = {}
    for path in out.glob("*.json"):
        result = json.loads(path.read_text())
        points[Path(result["submission"]).parent.parent.name] = result["points"]
    assert sorted(points) == sorted(students), (sorted(points)[:3], students[:3])
    return took, points, samples


def nbgrader_autograde(tmp: Path, count: int) -> tuple[float, dict[str, float]]:
    course = tmp / "course"
    course.mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(LAB, course / "labs" / LAB.name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "CHAOS_DOJO_GRADING_SECRET": SECRET, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}

    def nbgrader(*args: str) -> None:
        done = subprocess.run([str(BIN / "nbgrader"), *args], cwd=course, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"nbgrader {args[0]} failed:\n{done.stderr[-2000:]}")

    nbgrader("generate_assignment", LAB.name)
    students = write_submissions(course / "submitted", count)
    started = time.perf_counter()
    nbgrader("autograde", LAB.name)
    took = time.perf_counter() - started
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="chaos-dojo") as gb:
        points = {s: gb.find_submission(LAB.name, s).score for s in students}
    return took, points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--many", type=int, default=100, help="the larger number of submissions (default 100)")
    args = parser.parse_args()
    rows = []
    for count in (1, args.many):
        with tempfile.TemporaryDirectory(prefix="chaos-dojo-bench-grading-") as tmp:
            dojo_took, dojo_points, samples = dojo_grade(Path(tmp) / "dojo", count)
            nb_took, nb_points = nbgrader_autograde(Path(tmp) / "nbgrader", count)
        if dojo_points != nb_points:
            differ = {s: (dojo_points[s], nb_points.get(s)) for s in dojo_points if dojo_points[s] != nb_points.get(s)}
            raise SystemExit(f"dojo grade and nbgrader autograde disagree: {differ}")
        tenth = max(1, count // 10)
        early = max((rss for done, rss in samples if done <= tenth), default=0)
        peak = max((rss for _done, rss in samples), default=0)
        rows.append((count, dojo_took, nb_took, early, peak, sum(dojo_points.values())))
        print(f"{count} submissions: dojo grade {dojo_took:.1f} s, nbgrader autograde {nb_took:.1f} s, "
              f"same points ({sum(dojo_points.values()):g} in all); dojo grade's memory: peak "
              f"{early / 1024:.0f} MiB over the first {tenth}, {peak / 1024:.0f} MiB over all", flush=True)
    (one, d1, n1, *_), (many, dn, nn, early, peak, _) = rows
    print()
    print("| submissions | dojo grade | per submission | nbgrader autograde | per submission |")
    print("|---|---|---|---|---|")
    print(f"| {one} | {d1:.1f} s | {d1 / one:.1f} s | {n1:.1f} s | {n1 / one:.1f} s |")
    print(f"| {many} | {dn:.1f} s | {dn / many:.1f} s | {nn:.1f} s | {nn / many:.1f} s |")
    print(f"ratio {many}/{one}: dojo grade {dn / d1:.1f}x, nbgrader autograde {nn / n1:.1f}x; nbgrader/dojo at "
          f"{many}: {nn / dn:.2f}x. dojo grade's resident memory: {early / 1024:.0f} MiB (first tenth), "
          f"{peak / 1024:.0f} MiB (all {many})")


if __name__ == "__main__":
    main()
