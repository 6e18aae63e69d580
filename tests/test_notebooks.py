"""Every notebook runs top to bottom on a fresh kernel and is stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(
    p for folder in ("course", "labs") for p in (ROOT / folder).glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts
)


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_there_are_notebooks():
    """The course has at least its start-here notebook."""
    assert ROOT / "course" / "00-start-here.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_is_stored_without_outputs(path: Path):
    """A notebook is committed clean: no outputs, no execution counts."""
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{_id(path)}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_runs_top_to_bottom(path: Path):
    """Executing every cell in order on a fresh kernel raises no error."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
