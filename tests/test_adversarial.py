"""Adversarial submissions (tests/adversarial/) through `dojo grade` and nbgrader's autograde: every one earns 0,
crashes and hangs nothing, leaks neither the secret nor a hidden seed, and says why in one line per part; honest
submissions graded before and after them all earn full marks."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

from autograder.labs import load_module
from autograder.seeds import GRADING_SECRET_ENV, seed_bank

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "labs" / "02-idempotency"
ATTACKS = sorted((Path(__file__).parent / "adversarial").glob("*.py"))
HONEST = ("000-honest", "zzz-honest")
SECRET = "adversarial-test-secret-7f3a"
#: Limits for the tests' grading runs: tight, so that what only a limit stops costs little time.
TIME_LIMIT, MEMORY_LIMIT_MIB = 30, 1024
#: Attacks that never end, which only the wall-clock limit stops: any limit gives them the same 0, so they are
#: graded first, under a short limit of their own (and every honest submission is graded after them).
ONLY_A_LIMIT_STOPS = ("busy_endpoint", "sleeps_at_import", "stubborn_busy_endpoint")
SHORT_TIME_LIMIT = 5
_SECTION = re.compile(r"^# %% (service|cell|grade-cell|file|notebook-text)\b(.*)$", re.M)


def sections(text: str) -> list[tuple[str, list[str], str]]:
    """An attack file's sections: (kind, arguments, body)."""
    marks = list(_SECTION.finditer(text))
    return [(m.group(1), m.group(2).split(), text[m.end() + 1: marks[i + 1].start() if i + 1 < len(marks) else None])
            for i, m in enumerate(marks)]


def build(attack: Path | None, folder: Path, course: Path) -> None:
    """Write the submission ``attack`` describes (None: the reference solution, honestly) into ``folder``."""
    folder.mkdir(parents=True)
    nb = nbformat.read(LAB / "lab.ipynb", as_version=4)
    service = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "service")
    if attack is None:
        nb.cells[service].source = (LAB / "solution.py").read_text()
        nbformat.write(nb, folder / "lab.ipynb")
        return
    text = attack.read_text().replace("{ROOT}", str(course)).replace("{SECRET_ENV}", GRADING_SECRET_ENV)
    at = service + 1
    raw = None
    for kind, args, body in sections(text):
        if kind == "service":
            nb.cells[service].source += "\n\n" + body
        elif kind == "cell":
            nb.cells.insert(at, new_code_cell(body))
            at += 1
        elif kind == "grade-cell":
            grade_id, points = args
            nb.cells.insert(at, new_code_cell(body, metadata={"nbgrader": {
                "grade": True, "solution": False, "locked": False, "grade_id": grade_id, "points": int(points),
                "schema_version": 3}}))
            at += 1
        elif kind == "file":
            path = folder / args[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        else:
            raw = body
    if raw is not None:
        (folder / "lab.ipynb").write_text(raw)
    else:
        nbformat.write(nb, folder / "lab.ipynb")


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def _leftovers() -> list[str]:
    """Processes an attack may have started (its marker is the sleep of 999.25 s)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"999.25" in (proc / "cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            pass
    return found


def _hidden_seeds() -> list[int]:
    lab = load_module(LAB, "lab", "chaos_dojo_adversarial_test.lab")
    return seed_bank(lab.LAB, "hidden", lab.HIDDEN, secret=SECRET)


def _no_leak(text: str, where: str) -> None:
    assert SECRET not in text, f"the grading secret leaked into {where}"
    leaked = [s for s in _hidden_seeds() if re.search(rf"(?<![\d.]){s}(?![\d.])", text)]
    assert not leaked, f"hidden seeds {leaked} appear in {where}"


def test_each_attack_file_is_well_formed():
    """Every attack says what it tries and has at least one section (the test data is itself checked)."""
    assert len(ATTACKS) >= 25
    assert set(ONLY_A_LIMIT_STOPS) <= {attack.stem for attack in ATTACKS}
    for attack in ATTACKS:
        text = attack.read_text()
        assert text.startswith('"""') and sections(text), attack.name


def test_dojo_grade_gives_every_attack_0_and_honest_work_full_marks(tmp_path):
    before = _digest(ROOT / "labs")
    limited, submitted = tmp_path / "limited", tmp_path / "submitted"
    for attack in ATTACKS:
        build(attack, (limited if attack.stem in ONLY_A_LIMIT_STOPS else submitted) / attack.stem, ROOT)
    for name in HONEST:
        build(None, submitted / name, ROOT)
    out = tmp_path / "graded"
    env = {**os.environ, GRADING_SECRET_ENV: SECRET}
    started = time.monotonic()
    for folder, limit in ((limited, SHORT_TIME_LIMIT), (submitted, TIME_LIMIT)):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "dojo"), "grade", str(folder), "--lab", "02-idempotency", "--out",
             str(out), "--jobs", "2", "--time-limit", str(limit), "--memory-limit", str(MEMORY_LIMIT_MIB),
             "--no-pictures"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        _no_leak(done.stdout + done.stderr, "dojo grade's output")
    took = time.monotonic() - started
    results = {p.stem.split("-lab")[0]: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert sorted(p.stem for p in out.glob("*.html")) == sorted(p.stem for p in out.glob("*.json"))
    assert sorted(results) == sorted([a.stem for a in ATTACKS] + list(HONEST))
    for name, result in results.items():
        _no_leak(json.dumps(result), f"{name}'s result")
        if name in HONEST:
            assert result["points"] == result["max_points"] == 10, result
            continue
        assert result["points"] == 0, (name, result)
        assert name not in ONLY_A_LIMIT_STOPS or "wall-clock limit" in result["parts"][0]["message"], result
        for part in result["parts"]:
            first = part["message"].splitlines()[0]
            assert 20 < len(first) < 600 and "Traceback" not in part["message"], (name, part["message"])
    assert _digest(ROOT / "labs") == before, "an attack changed the course's files"
    assert not _leftovers(), "an attack left a process running"
    assert took < 600, took


def _nbgrader(course: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, GRADING_SECRET_ENV: SECRET,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert not check or done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_nbgrader_autograde_gives_every_attack_0_and_honest_work_full_marks(tmp_path):
    """The real pipeline, one student per attack: autograde ends (one student's notebook that is not a notebook
    is nbgrader's own error for that student, not the run's), scores every attack 0 and the honest students full
    marks, writes every feedback page; the secret and the hidden seeds appear in no autograded notebook and no
    feedback page; the course's source folder is unchanged."""
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(LAB, course / "labs" / LAB.name, ignore=shutil.ignore_patterns("__pycache__"))
    _nbgrader(course, "generate_assignment", LAB.name)
    before = _digest(course / "labs")
    students = {attack.stem.replace("_", "-"): attack for attack in ATTACKS}
    for student, attack in students.items():
        build(attack, course / "submitted" / student / LAB.name, course)
    for name in HONEST:
        build(None, course / "submitted" / name / LAB.name, course)
    limited = [s for s, attack in students.items() if attack.stem in ONLY_A_LIMIT_STOPS]
    started = time.monotonic()
    log = ""
    for limit, others in ((SHORT_TIME_LIMIT, [*HONEST, *(s for s in students if s not in limited)]),
                          (TIME_LIMIT, limited)):
        done = _nbgrader(course, "autograde", LAB.name, f"--GradeInGrader.time_limit={limit}",
                         f"--GradeInGrader.memory_limit_mib={MEMORY_LIMIT_MIB}", "--GradeInGrader.pictures=False",
                         f"--CourseDirectory.student_id_exclude={','.join(others)}", check=False)
        log += done.stdout + done.stderr
    took = time.monotonic() - started
    _no_leak(log, "autograde's log")
    # nbgrader cannot read a file that is not a notebook: its error for that student alone, the others graded
    errors = re.findall(r"error processing assignment '[^']+' for student '([^']+)'", log)
    assert errors == ["corrupt-notebook"], log[-3000:]
    del students["corrupt-notebook"]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="chaos-dojo") as gb:
        scores = {s: gb.find_submission(LAB.name, s).score for s in [*students, *HONEST]}
    assert {s: scores[s] for s in HONEST} == dict.fromkeys(HONEST, 10.0)
    assert {s: scores[s] for s in students} == dict.fromkeys(students, 0.0)
    _nbgrader(course, "generate_feedback", LAB.name, check=False)
    for student in [*students, *HONEST]:
        for folder in ("autograded", "feedback"):
            for path in (course / folder / student / LAB.name).glob("lab.*"):
                _no_leak(path.read_text(), str(path.relative_to(course)))
        page = (course / "feedback" / student / LAB.name / "lab.html").read_text()
        failed = any(word in page for word in ("Broken: ", "Not passed: ", "No verdict: "))
        assert failed != (student in HONEST) and ("Passed: " in page) == (student in HONEST), student
        assert student not in limited or "wall-clock limit" in page, student
    assert _digest(course / "labs") == before, "an attack changed the course's source files"
    assert not _leftovers(), "an attack left a process running"
    assert took < 900, took
