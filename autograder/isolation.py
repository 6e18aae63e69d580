"""Run untrusted code in a separate process with limits: the learner's side of grading.

``run_isolated(argv, folder=...)`` runs a command with, as far as the machine allows:

- a **wall-clock limit** (the whole process tree is killed when it is spent) and a **memory
  limit** (``RLIMIT_AS`` on every process of the tree);
- **no network** and **no view of the grader's files**: only the system's and Python's own
  folders, the installed packages, what the caller names as readable, and the submission's
  own ``folder`` (its working directory, writable); ``/tmp`` is private and empty;
- an **environment** of the caller's choosing (the grading secret is never in it);
- **nothing left running** afterwards: a process that detaches itself (``setsid``, a
  double fork) dies with the rest;
- an **early stop**: ``stop``, if given, is asked a few times a second whether the caller has
  what it needs (the grader, once every graded part has its verdict); then the tree is
  killed at once, and ``Outcome.stopped`` says so.

Which mechanism gives this depends on the machine, and ``Outcome.mechanism`` says which one
ran (``mechanism()`` tells in advance):

``"bubblewrap"``
    Flatpak's sandbox (``bwrap``, Debian package ``bubblewrap``): new user, network, PID,
    IPC and UTS namespaces; a private mount namespace holding only the folders above; the
    tree dies with its PID namespace and with the grader. Everything above holds.
``"unshare"``
    util-linux's ``unshare``: new user, network and PID namespaces (no network, nothing
    left running), but the file system is the grader's own: files readable by the grader
    are readable by the code. Used where ``bwrap`` is missing.
``"process"``
    A plain child process in a new session with the limits above and ``killpg`` at the
    end: no network isolation and no file isolation, and a process that leaves the session
    survives. Used where neither tool works (macOS, containers that forbid namespaces).

Written here rather than taken from a grading tool: nbgrader runs notebooks in the
grader's own account without limits (its FAQ says so), and otter-grader's isolation is
Docker, which this project cannot require of a Binder image or a learner's laptop.
``bwrap`` is the maintained tool that does the isolating; this module picks it, or what
is left when it is missing, and reports the outcome.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: What a submission gets by default.
DEFAULT_WALL = 300.0
DEFAULT_MEMORY = 3 * 1024**3
#: At most this much of each output stream is kept (the rest is cut, and says so).
OUTPUT_KEPT = 1 << 20
#: Real seconds between two questions to a run's ``stop``.
STOP_POLL = 0.05

MECHANISMS = ("bubblewrap", "unshare", "process")


@dataclass(frozen=True)
class Limits:
    """What one isolated run may use: ``wall`` real seconds, ``memory`` bytes of address space per process."""

    wall: float = DEFAULT_WALL
    memory: int = DEFAULT_MEMORY

    def __post_init__(self) -> None:
        if isinstance(self.wall, bool) or not isinstance(self.wall, (int, float)) or not 0 < self.wall < 86_400:
            raise ValueError(f"wall={self.wall!r}: give the wall-clock limit in seconds, more than 0, under a day")
        if isinstance(self.memory, bool) or not isinstance(self.memory, int) or self.memory < 64 * 1024**2:
            raise ValueError(f"memory={self.memory!r}: give the memory limit in bytes, at least 64 MiB (67108864)")


@dataclass(frozen=True)
class Outcome:
    """How an isolated run ended."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    mechanism: str
    #: The wall-clock limit was spent and the tree was killed.
    timed_out: bool = False
    #: The signal that ended the process, if one did (SIGKILL after a timeout, SIGSEGV...).
    signal: int | None = None
    #: The code ran out of its memory limit (a MemoryError it did not catch, or the allocator gave up).
    out_of_memory: bool = False
    notes: tuple[str, ...] = field(default=())
    #: The caller's ``stop`` said it had what it needed, and the tree was killed before it ended by itself.
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def why(self) -> str:
        """One line saying how the run ended, for a learner."""
        if self.stopped:
            return f"was stopped after {self.seconds:.1f} s, its caller having every answer it needed"
        if self.timed_out:
            return f"stopped after its wall-clock limit of {self.seconds:.0f} s (code that never finishes?)"
        if self.out_of_memory:
            return "ran out of its memory limit (code that keeps everything, or allocates without end?)"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = ""
            return f"was killed by signal {self.signal} {name}".rstrip()
        if self.returncode:
            return f"exited with status {self.returncode}"
        return "finished"


def run_isolated(
    argv: Sequence[str],
    *,
    folder: Path,
    readable: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    limits: Limits = Limits(),
    stdin: bytes = b"",
    mechanism: str | None = None,
    stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Run ``argv`` in ``folder`` (its working directory, and the only folder it may write) under ``limits``.

    ``readable`` adds folders or files the code may read (at their own paths), besides the system's, Python's
    and the installed packages'. ``env`` is the whole environment (default: ``PATH``, ``HOME`` set to ``folder``,
    ``LANG``, ``PYTHONHASHSEED=0``, ``PYTHONDONTWRITEBYTECODE=1``). ``mechanism`` forces one of ``MECHANISMS``
    (default: the best this machine has, see ``mechanism()``). ``stop``, if given, is called every ``STOP_POLL``
    seconds while the code runs: once it returns true the tree is killed (``Outcome.stopped``).
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise ValueError(f"folder={str(folder)!r} is not a folder: give the submission's own folder")
    chosen = mechanism or best_mechanism()
    if chosen not in MECHANISMS:
        raise ValueError(f"mechanism={chosen!r}: use one of {MECHANISMS}")
    environment = dict(env) if env is not None else default_env(folder)
    command = _wrap(chosen, list(argv), folder, [Path(p).resolve() for p in readable])
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command, cwd=folder, env=environment, stdin=subprocess.PIPE, stdout=out, stderr=err,
            start_new_session=True, preexec_fn=functools.partial(_limit, limits.memory),
        )
        timed_out = stopped = False
        try:
            timed_out, stopped = _wait(process, stdin, started + limits.wall, stop)
        finally:
            _kill_tree(process)
        seconds = time.monotonic() - started
        stdout, stderr = _read(out), _read(err)
    code = process.returncode
    died_of = -code if code is not None and code < 0 else None
    out_of_memory = "MemoryError" in stderr[-4000:] or "Cannot allocate memory" in stderr[-4000:]
    return Outcome(code, stdout, stderr, seconds, chosen, timed_out, died_of, out_of_memory, stopped=stopped)


def _wait(process: subprocess.Popen, stdin: bytes, deadline: float,
          stop: Callable[[], bool] | None) -> tuple[bool, bool]:
    """Wait for ``process`` until it ends, the ``deadline`` (``time.monotonic``) passes, or ``stop()`` is true:
    ``(timed_out, stopped)``."""
    data: bytes | None = stdin
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return True, False
        try:
            process.communicate(data, timeout=left if stop is None else min(left, STOP_POLL))
            return False, False
        except subprocess.TimeoutExpired:
            data = None  # sent: communicate() resumes where it was
        if stop is not None and stop() and process.poll() is None:
            return False, True


def default_env(folder: Path) -> dict[str, str]:
    """The environment of an isolated run: nothing of the grader's (no secret), one fixed hash seed."""
    return {
        "PATH": os.pathsep.join(p for p in (str(Path(sys.executable).parent), "/usr/bin", "/bin") if p),
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
    }


@functools.cache
def best_mechanism() -> str:
    """The best isolation this machine gives (see the module docstring): tried once per process."""
    for candidate in ("bubblewrap", "unshare"):
        try:
            probe = subprocess.run(_wrap(candidate, ["true"], Path("/"), []), capture_output=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return candidate
    return "process"


def _system_folders() -> list[Path]:
    """What any Python process needs to read: the system's folders, Python's own, the installed packages."""
    import site
    import sysconfig

    found = [Path(p) for p in ("/usr", "/etc")]
    found += [Path(sys.base_prefix), Path(sys.prefix), Path(sys.exec_prefix)]
    found += [Path(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])]
    found += [Path(p) for p in site.getsitepackages()]
    return [p.resolve() for p in dict.fromkeys(found) if p.exists()]


#: Top-level folders that are often symbolic links into /usr (merged /usr): recreated as links, or bound.
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def _wrap(mechanism: str, argv: list[str], folder: Path, readable: list[Path]) -> list[str]:
    if mechanism == "bubblewrap":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise FileNotFoundError("bwrap")
        command = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                   "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for top in _TOP_LEVEL:
            if os.path.islink(top):
                command += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                command += ["--ro-bind", top, top]
        for path in (*_system_folders(), *readable):
            if path.exists() and path != folder:
                command += ["--ro-bind", str(path), str(path)]
        if folder != Path("/"):
            command += ["--bind", str(folder), str(folder)]
        return [*command, "--chdir", str(folder), "--", *argv]
    if mechanism == "unshare":
        unshare = shutil.which("unshare")
        if unshare is None:
            raise FileNotFoundError("unshare")
        return [unshare, "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
                "--", *argv]
    return argv


def _limit(memory: int) -> None:
    """In the child, before it runs the command: its memory limit (inherited by everything it starts)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kill_tree(process: subprocess.Popen) -> None:
    """Kill the run's session (with bwrap or unshare, killing their first process ends the namespace too)."""
    for target in (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL is the kernel's
        pass


def _read(stream: tempfile._TemporaryFileWrapper) -> str:  # type: ignore[name-defined]
    stream.seek(0)
    data = stream.read(OUTPUT_KEPT + 1)
    text = data[:OUTPUT_KEPT].decode("utf-8", errors="replace")
    if len(data) > OUTPUT_KEPT:
        text += f"\n[... output cut at {OUTPUT_KEPT:,} bytes]"
    return text
