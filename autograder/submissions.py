"""``dojo grade``: grade submitted lab notebooks without an nbgrader course, each in an isolated process.

For each submission (a ``.ipynb``, or every notebook under a folder), the grader reads the
notebook as data (it never runs it), takes the learner's service cell (nbgrader id
``service``) and, for lab 04, the answer cell (``answer``), runs them isolated on the lab's
hidden runs (``autograder.grading.grade_service``: the hidden bank of the grading secret,
which only the grader's environment holds) and judges every graded part of ``lab.PARTS``
in its own process. Points per part come from the lab's own notebook (the source
assignment), never from the submission. It writes one JSON result per submission and
prints one line each, and an HTML feedback page per submission (``autograder.feedback``)::

    CHAOS_DOJO_GRADING_SECRET=... dojo grade submitted/ --lab 02-idempotency --out graded/

A result holds, per part, its points, whether it passed and what the learner reads (the
broken invariant and its evidence, the faults; never a hidden seed), and how the isolated
process ended.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .grading import DEFAULT_LIMITS, grade_service
from .isolation import Limits
from .labs import load_module
from .seeds import GRADING_SECRET_ENV

#: nbgrader ids of the cells a submission hands in.
SERVICE_CELL = "service"
ANSWER_CELL = "answer"


def notebooks(paths: Sequence[Path]) -> list[Path]:
    """The notebooks to grade: each path that is a notebook, and every notebook under each folder, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        else:
            found.append(path)
    return found


def cells(notebook: Path) -> dict[str, str]:
    """The sources of the notebook's cells that carry an nbgrader id, by id (read as data, never run).

    Raises:
        ValueError: the file is not a notebook, saying why.
    """
    import nbformat

    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception as exc:  # nbformat raises several kinds for a file that is not a notebook
        raise ValueError(f"{notebook} is not a Jupyter notebook ({type(exc).__name__}: {str(exc)[:200]})") from None
    return cells_of(nb.cells)


def cells_of(notebook_cells: Sequence[Any]) -> dict[str, str]:
    """The sources of the code cells among ``notebook_cells`` that carry an nbgrader id, by id (the first of each)."""
    found: dict[str, str] = {}
    for cell in notebook_cells:
        metadata = cell.get("metadata", {})
        nbgrader = metadata.get("nbgrader", {}) if isinstance(metadata, dict) else {}
        grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
        if isinstance(grade_id, str) and cell.get("cell_type") == "code" and grade_id not in found:
            source = cell.get("source", "")
            found[grade_id] = source if isinstance(source, str) else "".join(map(str, source))
    return found


def points(lab_dir: Path) -> dict[str, float]:
    """Each graded part's points, from the lab's own notebook (the source assignment)."""
    source = json.loads((lab_dir / "lab.ipynb").read_text())
    return {c["metadata"]["nbgrader"]["grade_id"]: float(c["metadata"]["nbgrader"]["points"])
            for c in source["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")}


def grade_notebook(notebook: Path, lab_dir: Path, lab: Any, *, secret: str | None,
                   limits: Limits = DEFAULT_LIMITS, pictures: bool = False) -> dict[str, Any]:
    """One submission's result (see the module docstring), as JSON data."""
    try:
        handed_in: dict[str, str] | str = cells(notebook)
    except (OSError, ValueError) as exc:
        handed_in = str(exc)
    return grade_handed_in(handed_in, lab_dir, lab, secret=secret, submission=str(notebook), limits=limits,
                           pictures=pictures)


def grade_handed_in(handed_in: dict[str, str] | str, lab_dir: Path, lab: Any, *, secret: str | None,
                    submission: str, limits: Limits = DEFAULT_LIMITS, pictures: bool = False) -> dict[str, Any]:
    """The result of grading the cells a submission handed in (``cells_of``; or why there are none, as text):
    ``dojo grade`` and nbgrader's autograde (``autograder.nbgrader.GradeInGrader``) both grade through here.
    With ``pictures``, ``result["pictures"]`` holds PNG bytes per broken part (``autograder.feedback``): take
    them out before writing the result as JSON."""
    started = time.monotonic()
    worth = points(lab_dir)
    result: dict[str, Any] = {"submission": submission, "lab": lab.LAB, "max_points": sum(worth.values())}
    if isinstance(handed_in, dict) and SERVICE_CELL not in handed_in:
        handed_in = (f"{submission} has no service cell (nbgrader id {SERVICE_CELL!r}): hand in the lab's notebook "
                     f"with its service cell, not a copy without nbgrader's metadata")
    if isinstance(handed_in, str):
        result.update(points=0.0, parts=[{"id": p, "points": 0.0, "max": w, "passed": False, "message": handed_in}
                                         for p, w in worth.items()], seconds=round(time.monotonic() - started, 2))
        return result
    parts, batch = grade_service(lab_dir, lab, handed_in[SERVICE_CELL], secret=secret,
                                 answer_source=handed_in.get(ANSWER_CELL), limits=limits)
    rows = [{"id": p.part, "points": worth.get(p.part, 0.0) if p.ok else 0.0, "max": worth.get(p.part, 0.0),
             "passed": p.ok, "message": p.message(),
             "replay": {"seed": p.replay[0], "line": p.replay[1]} if p.replay and p.replay[0] is not None else None}
            for p in parts]
    result.update(points=sum(r["points"] for r in rows), parts=rows, seconds=round(time.monotonic() - started, 2))
    if pictures:
        from .feedback import pictures as draw

        result["pictures"] = draw(parts)
    if batch is not None:
        result["process"] = {"mechanism": batch.outcome.mechanism, "how": batch.outcome.why(),
                             "seconds": round(batch.outcome.seconds, 2),
                             "output_lines": len(batch.outcome.stdout.splitlines())}
    return result


def grade_command(paths: Sequence[Path], lab_name: str, out: Path, *, jobs: int, labs_root: Path,
                  limits: Limits = DEFAULT_LIMITS, pictures: bool = True, cluster: str | None = None) -> int:
    """``dojo grade``: grade every submission under ``paths`` for lab ``lab_name``; write ``out/<name>.json`` and
    the feedback page ``out/<name>.html`` (with a picture per broken part unless ``pictures`` is false).

    With ``cluster`` (a Dask scheduler's address), the submissions are graded on that cluster's workers instead of
    here, ``jobs`` aside (see ``_on_cluster``); the results and pages are the same and are written here."""
    from .feedback import page

    lab_dir = labs_root / lab_name
    if not (lab_dir / "lab.py").is_file():
        known = sorted(p.name for p in labs_root.iterdir() if (p / "lab.py").is_file())
        print(f"dojo grade: error: unknown lab {lab_name!r}; labs: {', '.join(known)}")
        return 2
    found = notebooks(paths)
    missing = [p for p in found if not p.exists()]
    if missing or not found:
        print(f"dojo grade: error: nothing to grade at {', '.join(map(str, missing or paths))}: give notebooks "
              f"or folders holding them")
        return 2
    lab = load_module(lab_dir, "lab", f"chaos_dojo_grading.{lab_name.replace('-', '_')}")
    secret = os.environ.get(GRADING_SECRET_ENV) or None
    if secret is None:
        print(f"dojo grade: note: {GRADING_SECRET_ENV} is not set; grading on the public default hidden bank")
    out.mkdir(parents=True, exist_ok=True)
    names = _names(found)

    def write(notebook: Path, name: str, result: dict[str, Any]) -> None:
        drawn = result.pop("pictures", {})
        (out / f"{name}.json").write_text(json.dumps(result, indent=1))
        (out / f"{name}.html").write_text(page(result, drawn))
        print(f"{notebook}: {result['points']:g}/{result['max_points']:g} "
              + " ".join(f"{r['id']}={r['points']:g}" for r in result["parts"]))

    if cluster is not None:
        return _on_cluster(cluster, found, names, lab_dir, secret=secret, limits=limits, pictures=pictures,
                           write=write)

    def one(notebook: Path) -> dict[str, Any]:
        return grade_notebook(notebook, lab_dir, lab, secret=secret, limits=limits, pictures=pictures)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # each submission's work is its own process
        for notebook, name, result in zip(found, names, pool.map(one, found)):
            write(notebook, name, result)
    return 0


#: Seconds ``dojo grade --cluster`` waits to reach the scheduler.
CLUSTER_CONNECT_TIMEOUT = 20.0


def _on_cluster(address: str, found: Sequence[Path], names: Sequence[str], lab_dir: Path, *, secret: str | None,
                limits: Limits, pictures: bool, write: Any) -> int:
    """Grade ``found`` on the Dask cluster at ``address``: one task per submission, run by ``grade_on_worker``.

    The notebooks are read here, as data, and only their graded cells travel; each worker loads the lab from the
    same path (workers run the course's environment: the same checkout or image, bubblewrap included), grades in
    its own isolated processes as ``dojo grade`` does here, and sends back the result. The grading secret travels
    with each task, so the cluster must be the grader's own (a ``tls://`` address across a network you do not
    trust). The cluster spreads the work; Dask is the engine, nothing here schedules.
    """
    try:
        from distributed import Client
    except ImportError:
        print("dojo grade: error: --cluster needs Dask's distributed package, which is not installed here: "
              "pip install 'chaos-dojo[cluster]' (and run the cluster's workers in the course's environment)")
        return 2
    try:
        client = Client(address, timeout=CLUSTER_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        print(f"dojo grade: error: cannot reach a Dask scheduler at {address!r} ({type(exc).__name__}: "
              f"{str(exc)[:200]}); start one (`dask scheduler`, then `dask worker ADDRESS` on each machine, in the "
              f"course's environment), or grade on this machine without --cluster")
        return 2
    with client:
        handed_in = []
        for notebook in found:
            try:
                handed_in.append(cells(notebook))
            except (OSError, ValueError) as exc:
                handed_in.append(str(exc))
        futures = client.map(grade_on_worker, handed_in, [str(n) for n in found], key=[f"grade-{n}" for n in names],
                             lab_dir=str(lab_dir), secret=secret, limits=limits, pictures=pictures, pure=False)
        for notebook, name, future in zip(found, names, futures):
            try:
                result = future.result()
            except Exception as exc:  # the worker's error, re-raised here by Dask: no grade can be trusted
                print(f"dojo grade: error: the cluster could not grade {notebook}: {type(exc).__name__}: "
                      f"{str(exc)[:300]}")
                client.cancel(futures)
                return 2
            write(notebook, name, result)
    return 0


def grade_on_worker(handed_in: dict[str, str] | str, submission: str, *, lab_dir: str, secret: str | None,
                    limits: Limits, pictures: bool) -> dict[str, Any]:
    """One submission's result, computed on a cluster's worker (``dojo grade --cluster``): ``grade_handed_in``
    with the lab loaded in the worker's process from ``lab_dir``, which must hold the course there too."""
    if not (Path(lab_dir) / "lab.py").is_file():
        raise FileNotFoundError(f"this worker has no lab at {lab_dir}: run the cluster's workers where the course "
                                f"lies at the same path as on the machine running dojo grade (the same image)")
    return grade_handed_in(handed_in, Path(lab_dir), _lab(lab_dir), secret=secret, submission=submission,
                           limits=limits, pictures=pictures)


_LABS: dict[str, Any] = {}


def _lab(lab_dir: str) -> Any:
    """The lab's module, loaded once per worker process."""
    if lab_dir not in _LABS:
        name = Path(lab_dir).name
        _LABS[lab_dir] = load_module(Path(lab_dir), "lab", f"chaos_dojo_grading.{name.replace('-', '_')}")
    return _LABS[lab_dir]


def _names(found: Sequence[Path]) -> list[str]:
    """A file name per submission: its path's parts joined (submitted/alice/lab.ipynb -> submitted-alice-lab)."""
    common = os.path.commonpath([str(p.resolve().parent) for p in found]) if len(found) > 1 else str(
        found[0].resolve().parent)
    return [str(p.resolve().with_suffix("").relative_to(common)).replace(os.sep, "-") for p in found]
