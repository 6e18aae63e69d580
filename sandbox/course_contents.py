"""The course's Jupyter contents manager: a notebook opens unmodified.

JupyterLab copies the running kernel's ``language_info`` into a notebook's metadata as soon as the kernel starts, and
a notebook whose stored ``language_info`` differs (it holds only ``{"name": "python"}``: the exact Python version,
which is part of it, cannot be stored to match every machine and Binder image) shows as modified before the learner
has touched it. :class:`CourseContentsManager` serves each Python notebook with the ``language_info`` this
environment's kernel (ipykernel, on the server's own Python) will report, so the two agree and nothing changes on
opening; the file itself is only written when the learner saves.

``dojo course`` starts JupyterLab with it (``--ServerApp.contents_manager_class``); Binder's ``postBuild`` sets it in
the image's Jupyter server configuration.
"""

from __future__ import annotations

import copy
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

#: How Jupyter names this class in its configuration.
CLASS_NAME = f"{__name__}.CourseContentsManager"


def kernel_language_info() -> dict[str, Any]:
    """What this environment's Python kernel reports about its language, as ipykernel reports it."""
    from ipykernel.ipkernel import IPythonKernel

    return copy.deepcopy(IPythonKernel.language_info)  # its version is this Python's, the kernel's


def with_kernel_language_info(notebook: dict[str, Any]) -> dict[str, Any]:
    """``notebook`` (its JSON as a dict) with its ``language_info`` as the kernel will report it, if it is a notebook
    for the Python kernel; any other notebook is left as it is."""
    metadata = notebook.get("metadata")
    if not isinstance(metadata, dict):
        return notebook
    kernelspec = metadata.get("kernelspec") or {}
    language = (metadata.get("language_info") or {}).get("name", kernelspec.get("language"))
    if kernelspec.get("name") == "python3" and language == "python":
        metadata["language_info"] = kernel_language_info()
    return notebook


class CourseContentsManager(AsyncLargeFileManager):
    """Jupyter server's default contents manager, serving Python notebooks with the kernel's ``language_info``."""

    async def get(self, path: str, content: bool = True, type: str | None = None, format: str | None = None,
                  **kwargs: Any) -> dict[str, Any]:
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
            with_kernel_language_info(model["content"])
        return model
