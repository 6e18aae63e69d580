"""The course's contents manager serves each Python notebook with the language_info its kernel will report, so that
JupyterLab finds nothing to change when the kernel starts and the notebook does not show as modified."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from sandbox import cli
from sandbox.course_contents import (
    CLASS_NAME,
    CourseContentsManager,
    with_kernel_language_info,
)

ROOT = Path(__file__).resolve().parent.parent


def _get(root: Path, path: str, **kwargs) -> dict:
    return asyncio.run(CourseContentsManager(root_dir=str(root)).get(path, **kwargs))


@pytest.fixture(scope="module")
def reported() -> dict:
    """The language_info a freshly started python3 kernel reports in its kernel_info reply (what JupyterLab copies)."""
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        return client.kernel_info(reply=True, timeout=60)["content"]["language_info"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_a_course_notebook_is_served_with_what_its_kernel_reports(tmp_path: Path, reported: dict):
    """Start-here, as stored ({"name": "python"}), is served with exactly the kernel's language_info; its cells and
    kernelspec are served as stored, and the file on disk is not touched."""
    shutil.copy(ROOT / "course" / "00-start-here.ipynb", tmp_path / "start.ipynb")
    stored = (tmp_path / "start.ipynb").read_text()
    model = _get(tmp_path, "start.ipynb")
    assert json.loads(stored)["metadata"]["language_info"] == {"name": "python"}
    assert model["content"]["metadata"]["language_info"] == reported
    assert model["content"]["metadata"]["kernelspec"] == json.loads(stored)["metadata"]["kernelspec"]
    assert [c["source"] for c in model["content"]["cells"]] == [
        "".join(c["source"]) for c in json.loads(stored)["cells"]]
    assert (tmp_path / "start.ipynb").read_text() == stored


def test_other_notebooks_files_and_listings_are_served_as_stored(tmp_path: Path):
    """A notebook for another kernel keeps its language_info; a file, a folder listing, or a notebook asked for
    without content are Jupyter's own answers."""
    other = {"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "ir", "display_name": "R", "language": "R"}, "language_info": {"name": "R"}}}
    (tmp_path / "r.ipynb").write_text(json.dumps(other))
    (tmp_path / "notes.txt").write_text("hello")
    assert _get(tmp_path, "r.ipynb")["content"]["metadata"]["language_info"] == {"name": "R"}
    assert _get(tmp_path, "notes.txt")["content"] == "hello"
    assert {m["name"] for m in _get(tmp_path, "")["content"]} == {"r.ipynb", "notes.txt"}
    assert _get(tmp_path, "r.ipynb", content=False)["content"] is None
    assert with_kernel_language_info({"metadata": None}) == {"metadata": None}


def test_dojo_course_and_binder_both_use_it():
    """`dojo course` passes it on JupyterLab's command line; Binder's postBuild writes it into the image's server
    configuration; both name the class that exists."""
    assert cli.COURSE_CONTENTS_MANAGER == CLASS_NAME
    assert f"--ServerApp.contents_manager_class={CLASS_NAME}" in cli.course_command(ROOT)
    written = re.search(r"echo '(\{.*\})' > \"\$config/chaos-dojo\.json\"", (ROOT / "binder" / "postBuild").read_text())
    assert written, "binder/postBuild writes no server configuration for the contents manager"
    assert json.loads(written.group(1)) == {"ServerApp": {"contents_manager_class": CLASS_NAME}}
