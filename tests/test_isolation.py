"""Tests of the isolated runner (autograder.isolation): what learner code run under it can and cannot do."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autograder.isolation import (
    MECHANISMS,
    Limits,
    Outcome,
    best_mechanism,
    run_isolated,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the isolated runner's limits are Linux's")


def run(code: str, folder: Path, **kwargs) -> Outcome:
    (folder / "main.py").write_text(textwrap.dedent(code))
    return run_isolated([sys.executable, "main.py"], folder=folder, **kwargs)


@pytest.fixture
def submission(tmp_path: Path) -> Path:
    """A submission's folder, beside a grader's secret file and another learner's submission."""
    folder = tmp_path / "submitted" / "alice"
    folder.mkdir(parents=True)
    (tmp_path / "gradebook.db").write_text("bob: 10/10")
    (tmp_path / "submitted" / "bob").mkdir()
    (tmp_path / "submitted" / "bob" / "lab.ipynb").write_text("bob's answer")
    return folder


#: The best mechanism here; the tests of full isolation need bubblewrap (CI installs it and insists: .ci/run).
BEST = best_mechanism()
needs_bubblewrap = pytest.mark.skipif(
    BEST != "bubblewrap" and not os.environ.get("CHAOS_DOJO_REQUIRE_BWRAP"),
    reason=f"bubblewrap is not installed (apt install bubblewrap); this machine isolates with {BEST!r}",
)


@needs_bubblewrap
def test_this_machine_isolates_with_bubblewrap():
    """CI installs bubblewrap (.ci/run): the tests below check the full isolation, not a fallback."""
    assert BEST == "bubblewrap"


@needs_bubblewrap
def test_a_clean_run_reports_its_output_and_status(submission):
    result = run("print('hello'); import sys; print('oops', file=sys.stderr)", submission)
    assert result.ok and result.returncode == 0 and result.mechanism == "bubblewrap"
    assert result.stdout == "hello\n" and result.stderr == "oops\n" and result.why() == "finished"


@needs_bubblewrap
def test_the_code_sees_its_own_folder_but_no_other_submission_no_gradebook_and_no_secret(submission, monkeypatch):
    monkeypatch.setenv("CHAOS_DOJO_GRADING_SECRET", "hunter2")
    result = run(f"""
        import os, pathlib
        print(sorted(os.listdir(".")))
        print(pathlib.Path("mine.txt").write_text("kept") and "wrote")
        for path in ({str(submission.parent / 'bob' / 'lab.ipynb')!r}, {str(submission.parent.parent / 'gradebook.db')!r},
                     {str(Path(__file__))!r}):
            try:
                print(open(path).read())
            except OSError as exc:
                print(type(exc).__name__)
        print(os.environ.get("CHAOS_DOJO_GRADING_SECRET"))
        print(sorted(os.listdir("/tmp")))
    """, submission)
    # /tmp is private: it shows only the folders leading to what is bound into it (the submission, Python's own)
    bound = [submission, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    under_tmp = sorted({p.parts[2] for p in bound if len(p.parts) > 2 and p.parts[1] == "tmp"})
    assert result.ok, result.stderr
    assert result.stdout.splitlines() == ["['main.py']", "wrote", "FileNotFoundError", "FileNotFoundError",
                                          "FileNotFoundError", "None", str(under_tmp)]
    assert (submission / "mine.txt").read_text() == "kept"


@needs_bubblewrap
def test_named_files_are_readable_and_read_only(submission, tmp_path):
    shared = tmp_path / "shared.py"
    shared.write_text("VALUE = 42\n")
    result = run(f"""
        print(open({str(shared)!r}).read().strip())
        try:
            open({str(shared)!r}, "w").write("VALUE = 0")
        except OSError as exc:
            print(type(exc).__name__)
    """, submission, readable=[shared])
    assert result.stdout.splitlines() == ["VALUE = 42", "OSError"] and shared.read_text() == "VALUE = 42\n"


@needs_bubblewrap
def test_the_code_has_no_network(submission):
    result = run("""
        import socket
        try:
            socket.create_connection(("pypi.org", 443), timeout=3)
        except OSError as exc:
            print("refused", type(exc).__name__)
        try:
            socket.create_connection(("127.0.0.1", 22), timeout=3)
        except OSError as exc:
            print("refused", type(exc).__name__)
    """, submission)
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["refused", "refused"], result


def test_a_run_that_never_ends_is_killed_at_its_wall_clock_limit(submission):
    started = time.monotonic()
    result = run("while True: pass", submission, limits=Limits(wall=1.0))
    assert time.monotonic() - started < 10
    assert result.timed_out and not result.ok and "wall-clock limit" in result.why()


def test_a_run_is_stopped_as_soon_as_its_caller_has_what_it_needs(submission):
    """``stop`` is asked while the code runs: once it is true (here, once the code has written its first answer)
    the tree is killed at once, long before its wall-clock limit, and the outcome says it was stopped."""
    answer = submission / "answer.txt"
    asked = []

    def stop() -> bool:
        asked.append(time.monotonic())
        return answer.exists()

    started = time.monotonic()
    result = run(f"""
        import pathlib, time
        time.sleep(0.5)
        pathlib.Path({str(answer)!r}).write_text("42")
        while True:
            pass
    """, submission, limits=Limits(wall=60.0), stop=stop)
    assert time.monotonic() - started < 20 and len(asked) >= 3
    assert result.stopped and not result.timed_out and not result.ok
    assert result.why().startswith("was stopped after") and "caller" in result.why()


def test_a_run_that_ends_by_itself_is_not_stopped(submission):
    """A run that finishes before ``stop`` is ever true ends as it would without it."""
    result = run("print('done')", submission, stop=lambda: False)
    assert result.returncode == 0 and result.stdout == "done\n" and not result.stopped and result.why() == "finished"


def test_a_run_that_allocates_without_end_meets_its_memory_limit(submission):
    result = run("""
        hoard = []
        while True:
            hoard.append(bytearray(100 * 1024 * 1024))
    """, submission, limits=Limits(wall=60, memory=512 * 1024**2))
    assert not result.ok and result.out_of_memory and "memory limit" in result.why()


@needs_bubblewrap
def test_nothing_the_code_started_is_left_running(submission):
    """A grandchild that detaches itself (its own session, a double fork) dies with the run."""
    marker = submission / "still-running"
    result = run(f"""
        import os, subprocess, sys
        subprocess.Popen([sys.executable, "-c",
                          "import time, pathlib\\ntime.sleep(3)\\npathlib.Path({str(marker)!r}).write_text('alive')"],
                         start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                import time, pathlib
                time.sleep(3)
                pathlib.Path({str(marker)!r}).write_text("alive")
            os._exit(0)
        print("left")
    """, submission)
    assert result.stdout == "left\n"
    time.sleep(4.5)
    assert not marker.exists()


def test_death_by_exit_code_or_signal_is_reported(submission):
    assert run("import os; os._exit(3)", submission).returncode == 3
    killed = run("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", submission)
    assert not killed.ok and killed.why() in {"was killed by signal 11 SIGSEGV", "exited with status 139"}


def test_output_is_kept_up_to_a_bound(submission):
    result = run("import sys; sys.stdout.write('x' * 3_000_000)", submission)
    assert len(result.stdout) < 1_100_000 and result.stdout.endswith("output cut at 1,048,576 bytes]")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_every_mechanism_limits_time_and_leaves_nothing_running(mechanism, submission):
    """The fallbacks (unshare, a plain process) still enforce the wall-clock limit and kill what they started."""
    result = run("print('up', flush=True)\nwhile True: pass", submission, limits=Limits(wall=1.0), mechanism=mechanism)
    assert result.timed_out and result.stdout == "up\n" and result.mechanism == mechanism


@pytest.mark.parametrize(("kwargs", "shown"), [({"wall": 0}, "wall=0"), ({"memory": 1000}, "memory=1000"),
                                               ({"wall": "5"}, "wall='5'")])
def test_bad_limits_are_refused_with_the_value(kwargs, shown):
    with pytest.raises(ValueError) as info:
        Limits(**kwargs)
    assert shown in str(info.value)


def test_a_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(ValueError) as info:
        run_isolated(["true"], folder=tmp_path / "nope")
    assert "nope" in str(info.value)
    assert os.listdir(tmp_path) == []
