"""Every notebook runs top to bottom on a fresh kernel and is stored without outputs.

A course notebook runs without an error. A lab notebook hands out the generated code; its runs (as shipped: errors
in its grade cells only, as the generated code is flawed and the grade cells say so; with the reference solution
pasted in: no error at all) are nbgrader's autograde runs, asserted in tests/test_nbgrader.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(
    p for folder in ("course", "labs") for p in (ROOT / folder).glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts
)
COURSE = [p for p in NOTEBOOKS if p.is_relative_to(ROOT / "course")]
LABS = [p for p in NOTEBOOKS if p.is_relative_to(ROOT / "labs")]


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _run(nb, folder: Path) -> list[tuple[int, str, str]]:
    """Execute ``nb`` in ``folder`` on a fresh kernel; return (cell index, grade_id, error name) of each error.
    Cells tagged ``raises-exception`` (the grade cells) may fail without stopping the run, as in JupyterLab."""
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute()
    return [(i, _grade_id(c), o.ename) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]


def test_there_are_notebooks():
    """The course has its start-here notebook and six modules; each of the six labs has its notebook."""
    assert [p.name for p in COURSE] == ["00-start-here.ipynb", "01-cap.ipynb", "02-idempotency.ipynb",
                                        "03-sagas.ipynb", "04-tracing.ipynb", "05-concurrency.ipynb",
                                        "06-resilience.ipynb"]
    assert [p.parent.name for p in LABS] == ["01-cap", "02-idempotency", "03-sagas", "04-tracing", "05-concurrency",
                                             "06-resilience"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_is_stored_without_outputs(path: Path):
    """A notebook is committed clean: no outputs, no execution counts, and every cell has its id (nbformat 4.5; a
    cell without one is given a new id, a change, each time the notebook is opened)."""
    import json

    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{_id(path)}: cells {dirty} have outputs; clear them before committing"
    unnamed = [i for i, c in enumerate(json.loads(path.read_text())["cells"]) if "id" not in c]
    assert not unnamed, f"{_id(path)}: cells {unnamed} have no id; nbformat.validator.normalize() gives them one"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_names_the_kernel_as_jupyterlab_does(path: Path):
    """The stored kernelspec is the installed ipykernel's own, display name included: JupyterLab rewrites any other
    on opening, and the notebook shows as modified before the learner has touched it."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    stored = nbformat.read(path, as_version=4).metadata.kernelspec
    assert (stored.name, stored.display_name, stored.language) == ("python3", spec.display_name, spec.language), (
        f"{_id(path)}: its kernelspec is {dict(stored)}; store name 'python3', display_name "
        f"{spec.display_name!r}, language {spec.language!r}")


@pytest.mark.skipif(os.environ.get("CHAOS_DOJO_BROWSER") == "1",
                    reason="the browser check runs this notebook top to bottom in JupyterLab and asserts the same")
@pytest.mark.parametrize("path", COURSE, ids=_id)
def test_course_notebook_runs_top_to_bottom(path: Path):
    """Executing every cell in order on a fresh kernel raises no error. (Where the browser check runs, CI, it runs
    every notebook in JupyterLab and fails on any error a cell shows or any cell left unrun; this run would repeat
    it.)"""
    nb = nbformat.read(path, as_version=4)
    assert _run(nb, path.parent) == []


@pytest.mark.parametrize("path", LABS, ids=_id)
def test_lab_notebook_hands_out_the_generated_code(path: Path):
    """As shipped, the service cell is generated.py. (The lab notebook's top-to-bottom runs, as shipped and with
    the reference pasted in, are nbgrader's: autograde runs it in tests/test_nbgrader.py, which asserts what a run
    must show; the browser check runs it as shipped too.)"""
    nb = nbformat.read(path, as_version=4)
    service = [c for c in nb.cells if _grade_id(c) == "service"]
    assert [c.source.rstrip() for c in service] == [(path.parent / "generated.py").read_text().rstrip()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_every_link_between_notebooks_leads_somewhere(path: Path):
    """Every relative link in a notebook's prose (to another notebook, a file, a folder) exists, so a learner
    can follow the course from start-here to every module and lab and back."""
    import re

    nb = nbformat.read(path, as_version=4)
    targets = [t for c in nb.cells if c.cell_type == "markdown"
               for t in re.findall(r"\]\(([^)\s]+)\)", c.source)
               if not re.match(r"[a-z]+:|#", t)]
    broken = [t for t in targets if not (path.parent / t.split("#")[0]).exists()]
    assert not broken, f"{_id(path)}: links to nothing: {broken}"
