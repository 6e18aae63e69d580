"""Binder launches the course from pinned dependencies: binder/ follows repo2docker's rules and agrees with pyproject.

``binder/requirements.txt`` is generated from pyproject.toml (its first lines say how); repo2docker installs it in
its own cached layer, then ``binder/postBuild`` installs the package alone. The README's commands install the same
pins, so the suite (every notebook executed) runs on exactly what Binder runs.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from sandbox.cli import START_NOTEBOOK

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins() -> list[tuple[Requirement, str]]:
    """Each line of binder/requirements.txt: the requirement and its ``# via`` annotation."""
    pins = []
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        spec, _, via = line.partition("#")
        if spec.strip():
            pins.append((Requirement(spec.strip()), via.strip()))
    return pins


def _pinned_here(env: dict[str, str] | None = None) -> dict[str, Version]:
    """The pinned version of each package that applies to ``env`` (by default, this interpreter)."""
    versions: dict[str, Version] = {}
    for req, _ in _pins():
        if req.marker is None or req.marker.evaluate(env):
            name = canonicalize_name(req.name)
            assert name not in versions, f"{req.name} is pinned twice for the same environment"
            versions[name] = Version(next(iter(req.specifier)).version)
    return versions


def _python_311() -> dict[str, str]:
    return {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.9"}


def test_every_line_pins_one_exact_version():
    """Nothing is left to the day's resolver: each line is ``name==version``, with at most a platform marker."""
    loose = [str(req) for req, _ in _pins() if len(req.specifier) != 1 or next(iter(req.specifier)).operator != "=="]
    assert not loose, f"binder/requirements.txt has unpinned lines {loose}; regenerate it with the command on its line 2"


def test_the_pins_satisfy_every_declared_dependency():
    """Each dependency pyproject.toml declares is pinned, at a version its range allows, on Binder's Python (3.11)
    and on this one."""
    for env in (_python_311(), None):
        pinned = _pinned_here(env)
        for dep in map(Requirement, PYPROJECT["project"]["dependencies"]):
            name = canonicalize_name(dep.name)
            assert name in pinned, f"{dep.name} is declared in pyproject.toml but not pinned in binder/requirements.txt"
            assert dep.specifier.contains(pinned[name], prereleases=True), (
                f"binder/requirements.txt pins {dep.name}=={pinned[name]}, outside pyproject.toml's {dep}: "
                f"regenerate it with the command on its line 2")


def test_the_pins_were_generated_from_todays_pyproject():
    """The packages pinned because pyproject.toml asks for them are exactly those it declares: a dependency added or
    removed since the pins were generated shows here."""
    direct = sorted(canonicalize_name(req.name) for req, via in _pins() if "chaos-dojo (pyproject.toml)" in via)
    declared = sorted(canonicalize_name(Requirement(d).name) for d in PYPROJECT["project"]["dependencies"])
    assert direct == declared
    assert "--python-version 3.11" in (BINDER / "requirements.txt").read_text().splitlines()[1]
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_the_tests_run_on_the_pinned_versions():
    """The README's commands install the pins, so every notebook this suite executes ran on what Binder installs.

    Installed otherwise (a plain ``pip install -e .``), the suite says so here rather than pass on other versions.
    """
    off = {}
    for name, version in _pinned_here().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            off[name] = (str(version), "not installed")
            continue
        if installed != version:
            off[name] = (str(version), str(installed))
    assert not off, (f"these packages differ from binder/requirements.txt (pinned, installed): {off}; install with "
                     f"the README's command: pip install -r binder/requirements.txt -e '.[test]'")


def test_postbuild_installs_the_package_alone_and_hides_the_instructor_tools():
    """postBuild adds no dependency of its own (they are the pinned layer's), and installs the course's settings."""
    post = (BINDER / "postBuild").read_text()
    installs = [line.strip() for line in post.splitlines() if "pip install" in line and not line.strip().startswith("#")]
    assert installs == ["pip install --no-cache-dir --no-deps -e ."]
    assert "page_config.json" in post and "overrides.json" in post
    assert "jupyter server extension disable --sys-prefix nbgrader.server_extensions.formgrader" in post


def test_a_learner_sees_none_of_nbgraders_instructor_tools():
    """The settings `dojo course` and Binder give JupyterLab disable nbgrader's menu, "Create Assignment", the
    formgrader and the course list; the plugins named are ones the installed nbgrader extension has."""
    disabled = json.loads((BINDER / "jupyterlab" / "page_config.json").read_text())["disabledExtensions"]
    assert sorted(disabled) == sorted(f"@jupyter/nbgrader:{p}" for p in ("menu", "create-assignment", "formgrader",
                                                                           "course-list"))
    bundles = list(Path(sys.prefix, "share", "jupyter", "labextensions", "@jupyter", "nbgrader").glob("static/*.js"))
    plugins = set(re.findall(r'"(@jupyter/nbgrader:[a-z-]+)"', " ".join(p.read_text() for p in bundles)))
    assert set(disabled) <= plugins, f"not plugins of nbgrader's extension: {sorted(set(disabled) - plugins)}"


def test_the_readme_badge_launches_the_start_notebook_from_the_published_repository():
    """The badge is built from pyproject.toml's Repository address, the one place that names it."""
    repository = PYPROJECT["project"]["urls"]["Repository"]
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", repository)
    assert match, f"pyproject.toml's Repository {repository!r} is not a GitHub address https://github.com/OWNER/NAME"
    badge = (f"[![Launch the course on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/"
             f"{match[1]}/{match[2]}/HEAD?urlpath=lab/tree/{START_NOTEBOOK.as_posix()})")
    assert badge in (ROOT / "README.md").read_text()
    assert (ROOT / START_NOTEBOOK).is_file()

