"""nbgrader's gradebook on a real PostgreSQL server, as a room graded on a JupyterHub keeps it.

The server is started here, in a temporary folder, on a free port of 127.0.0.1, and stopped after. PostgreSQL
refuses to run as root, and CI runs as root, so as root its programs run as the ``postgres`` user (or ``nobody``)
through util-linux's ``runuser``; pytest-postgresql cannot do that, which is why this starts the server itself.
Without PostgreSQL's programs the tests are skipped and say so, unless ``CHAOS_DOJO_REQUIRE_POSTGRES=1`` (CI sets
it, after installing Debian's ``postgresql``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.nbgrader import GRADEBOOK_ENV

ROOT = Path(__file__).resolve().parent.parent
SERVICE = {"grade": False, "solution": True, "locked": False, "task": False, "grade_id": "service", "schema_version": 3}
GRADED = {"grade": True, "solution": False, "locked": True, "task": False, "points": 10, "grade_id": "fixed",
          "schema_version": 3}


def _bindir() -> Path | None:
    """Where PostgreSQL's server programs are: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of our own; yields the SQLAlchemy URL of an empty database ``gradebook`` on it."""
    bindir = _bindir()
    if bindir is None:
        if os.environ.get("CHAOS_DOJO_REQUIRE_POSTGRES") == "1":
            pytest.fail("CHAOS_DOJO_REQUIRE_POSTGRES=1 but PostgreSQL's pg_ctl is neither on PATH nor in "
                        "/usr/lib/postgresql/*/bin: install Debian's postgresql package")
        pytest.skip("PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="chaos-dojo-pg-"))
    if os.geteuid() == 0:
        user = "postgres" if "postgres" in {p.pw_name for p in pwd.getpwall()} else "nobody"
        prefix = ["runuser", "-u", user, "--"]
        folder.chmod(0o755)
        shutil.chown(folder, user)
    data, port = folder / "data", _free_port()

    def run(*argv: str) -> None:
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{argv[0]} failed: {done.stdout}{done.stderr}"

    run(str(bindir / "initdb"), "-D", str(data), "-U", "chaosdojo", "--auth=trust", "--no-sync", "-E", "UTF8")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60", "start",
        "-o", f"-h 127.0.0.1 -p {port} -k {folder} -F")
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="chaosdojo", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE gradebook")
        yield f"postgresql+psycopg://chaosdojo@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def _toy_course(root: Path) -> None:
    """The repository's nbgrader_config.py and a lab of its shape, small enough to release in seconds."""
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    folder = root / "labs" / "toy"
    folder.mkdir(parents=True)
    (folder / "lab.py").write_text('def grade(f):\n    assert f() == "fixed"\n')
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                               "language": "python"}})
    nb.cells = [new_markdown_cell("# A toy lab"), new_code_cell("import lab"),
                new_code_cell("def create_app():\n    return 'generated'", metadata={"nbgrader": SERVICE}),
                new_code_cell("lab.grade(create_app)", metadata={"nbgrader": GRADED})]
    nbformat.write(nb, folder / "lab.ipynb")


def _nbgrader(course: Path, url: str, *args: str) -> str:
    env = {**os.environ, GRADEBOOK_ENV: url,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


# nbgrader's add_submission builds its rows before adding them to the session, which SQLAlchemy 2 warns about.
@pytest.mark.filterwarnings("ignore:Object of type:sqlalchemy.exc.SAWarning")
def test_the_course_keeps_its_gradebook_in_postgresql(postgres, tmp_path):
    """With CHAOS_DOJO_GRADEBOOK naming the server, nbgrader's own commands create their tables there (alembic),
    record the released lab's grade cells and the students, and compute scores with PostgreSQL's SQL."""
    from nbgrader.api import Gradebook

    _toy_course(tmp_path)
    _nbgrader(tmp_path, postgres, "db", "student", "add", "ada", "--first-name=Ada", "--last-name=Lovelace")
    _nbgrader(tmp_path, postgres, "generate_assignment", "toy")
    assert not (tmp_path / "gradebook.db").exists(), "nbgrader wrote its SQLite gradebook instead"

    with Gradebook(postgres, course_id="chaos-dojo") as gb:
        assert gb.find_student("ada").last_name == "Lovelace"
        gb.add_student("bob")
        assignment = gb.find_assignment("toy")
        assert [c.name for c in assignment.notebooks[0].grade_cells] == ["fixed"]
        assert assignment.max_score == 10
        for student, points in (("ada", 10.0), ("bob", 4.0)):
            submission = gb.add_submission("toy", student)
            grade = gb.find_grade("fixed", "lab", "toy", student)
            grade.manual_score = points
            gb.db.commit()
            assert submission.score == points
        assert gb.average_assignment_score("toy") == pytest.approx(7.0)
        assert sorted((s["student"], s["score"]) for s in gb.submission_dicts("toy")) == [("ada", 10.0), ("bob", 4.0)]

    import psycopg

    with psycopg.connect(postgres.replace("postgresql+psycopg", "postgresql")) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"alembic_version", "assignment", "notebook", "student", "submitted_assignment", "grade"} <= tables


def test_a_gradebook_setting_that_is_not_a_url_is_refused_with_the_value(monkeypatch, tmp_path):
    from traitlets.config import Config

    from autograder.nbgrader import configure

    monkeypatch.setenv(GRADEBOOK_ENV, "gradebook.sqlite")
    with pytest.raises(ValueError, match="'gradebook.sqlite' is not a database URL.*postgresql\\+psycopg://"):
        configure(Config(), str(tmp_path))
    monkeypatch.setenv(GRADEBOOK_ENV, "postgresql+psycopg://nbgrader@db:5432/gradebook")
    c = Config()
    configure(c, str(tmp_path))
    assert c.CourseDirectory.db_url == "postgresql+psycopg://nbgrader@db:5432/gradebook"
