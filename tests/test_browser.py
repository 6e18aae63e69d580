"""The course as a learner sees it: every notebook in JupyterLab, in a real browser (Chromium, driven by Playwright).

For each notebook, at a 1440x900 window: opening it and starting its kernel changes nothing (the notebook does not
show as modified: the course's contents manager serves it with the ``language_info`` its kernel reports), nbgrader's
instructor tools are not shown, Run All finishes with no error output except the grade cells' "Not passed" (a lab hands out flawed code, and
its grade cells say so), no widget fails to display, and every widget (button, toggle, dropdown, slider, checkbox)
changes what its cell shows when used. Screenshots of every notebook (whole, and each cell's pictures and widgets at
the size they are shown) and of every widget interaction are saved where ``CHAOS_DOJO_SCREENSHOTS`` says (by default a
pytest temporary folder), so CI can keep them.

JupyterLab starts as ``dojo course`` starts it (``sandbox.cli.course_command``: the course's settings, nbgrader's
instructor tools hidden), on a free port with a token, rooted in a temporary copy of the repository and with its
Jupyter folders in temporary folders, so nothing is written into the checkout. One server and one browser serve all
notebooks of a test process (``-n 2`` runs two at once).

Opt-in, as it takes minutes: set ``CHAOS_DOJO_BROWSER=1`` (``.ci/run`` does). The browser is Debian's ``chromium``
(``apt-get install chromium``; ``CHAOS_DOJO_CHROMIUM`` names another executable): Playwright's own browser download
is never used.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from sandbox.cli import course_command, course_environment

if os.environ.get("CHAOS_DOJO_BROWSER") != "1":
    pytest.skip("the browser check is opt-in (it takes minutes): set CHAOS_DOJO_BROWSER=1 to run it",
                allow_module_level=True)

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - an environment without the test extra
    pytest.fail("CHAOS_DOJO_BROWSER=1 but Playwright is not installed: pip install -e '.[test]' (it drives the "
                "system's Chromium; no `playwright install` needed)", pytrace=False)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted([*ROOT.glob("course/*.ipynb"), *ROOT.glob("labs/*/lab.ipynb")])
WINDOW = {"width": 1440, "height": 900}
#: The longest a notebook may take to run all its cells (a loaded 2-core machine runs the slowest in about 2 min).
RUN_TIMEOUT_MS = 900_000
#: What ipywidgets shows when a widget cannot be displayed.
WIDGET_FAILURES = ("Error displaying widget", "Failed to load model class", "Error creating widget")
#: Outputs worth a picture of their own (the notebook's pictures show the rest): images, SVG, HTML, widgets.
PICTURES = ".jp-RenderedImage, .jp-RenderedSVG, .jp-RenderedHTML, .jupyter-widgets"
#: nbgrader's "Create Assignment" panel (its id, misspelt as nbgrader spells it) and anything else naming it.
INSTRUCTOR_TOOLS = "#nbgrader-create_assignemnt, [title*='Create Assignment'], :text('Create Assignment')"
#: The ipywidgets controls a learner can use, each with what using it means (see ``_use``).
CONTROLS = ("button.widget-button, .widget-toggle-buttons, .widget-dropdown select, .widget-slider, "
            ".widget-checkbox input")


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: where it listens, its token, the copy of the repository it serves, its log."""

    url: str
    token: str
    root: Path
    log: Path

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None


def _chromium() -> str:
    named = os.environ.get("CHAOS_DOJO_CHROMIUM")
    found = named or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        pytest.fail(f"CHAOS_DOJO_BROWSER=1 but no Chromium at {named or 'chromium on PATH'!r}: install Debian's "
                    f"(apt-get install -y chromium) or set CHAOS_DOJO_CHROMIUM to a Chromium executable; "
                    f"never `playwright install`")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_repository(target: Path) -> Path:
    """The repository without its venv, git folder and caches; the notebook settings render every cell at once, so
    the whole notebook is in the page (JupyterLab otherwise leaves cells out of view unrendered)."""
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", ".ipynb_checkpoints", ".hypothesis"))
    overrides = target / "binder" / "jupyterlab" / "overrides.json"
    settings = json.loads(overrides.read_text())
    settings.setdefault("@jupyterlab/notebook-extension:tracker", {})["windowingMode"] = "none"
    overrides.write_text(json.dumps(settings, indent=2))
    return target


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab started as `dojo course` starts it, on a temporary copy of the repository."""
    home = tmp_path_factory.mktemp("jupyterlab")
    root = _copy_repository(home / "chaos-dojo")
    port, token = _free_port(), secrets.token_hex(16)
    env = course_environment()
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                 "JUPYTERLAB_WORKSPACES_DIR", "MPLCONFIGDIR"):
        env[name] = str(home / name.lower())
    argv = course_command(root, no_browser=True, port=port, allow_root=hasattr(os, "geteuid") and os.geteuid() == 0)
    argv += [f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1"]
    log = home / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}: {log.read_text()[-3000:]}")
            try:
                lab.api("GET", "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within 180 s: {log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield lab
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        sys.stderr.write(f"\nJupyterLab's log ({log}):\n{log.read_text()}\n")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, started by Playwright from its executable (no browser download)."""
    executable = _chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the pictures go: $CHAOS_DOJO_SCREENSHOTS (CI keeps it), or a pytest temporary folder."""
    folder = Path(os.environ.get("CHAOS_DOJO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _current(selector: str) -> str:
    """``selector`` inside the notebook panel in front."""
    return f".jp-NotebookPanel:not(.lm-mod-hidden) {selector}"


def _kernel_idle(page: Page) -> bool:
    return page.locator(_current(".jp-Notebook-ExecutionIndicator")).first.get_attribute("data-status") == "idle"


def _wait_until_ready(page: Page) -> None:
    """Until the notebook is shown, its kernel has started and has told JupyterLab about itself."""
    page.wait_for_selector(_current(".jp-Notebook .jp-Cell"), timeout=180_000)
    page.wait_for_selector(".jp-StatusBar-Widget:has-text('| Idle')", timeout=180_000)
    page.wait_for_function("""() => {
        const i = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
        return i && i.getAttribute('data-status') === 'idle'; }""", timeout=180_000)
    page.wait_for_timeout(2000)  # the kernel's reply about itself lands in the notebook's metadata


def _dirty(page: Page) -> bool:
    return page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").count() > 0


def _what_opening_changed(page: Page, lab: Lab, path: Path) -> list[str]:
    """Save the notebook JupyterLab holds (into the temporary copy) and name what differs from the file: the top-level
    metadata keys and the cells whose JSON changed."""
    page.locator(_current(".jp-Notebook")).first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    copy = lab.root / path.relative_to(ROOT)
    before = json.loads(path.read_text())
    deadline = time.monotonic() + 30
    while json.loads(copy.read_text()) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    after = json.loads(copy.read_text())
    changed = [f"metadata.{k}: {before['metadata'].get(k)!r} -> {after['metadata'].get(k)!r}"
               for k in sorted(set(before["metadata"]) | set(after["metadata"]))
               if before["metadata"].get(k) != after["metadata"].get(k)]
    changed += [f"cell {i}" for i, (a, b) in enumerate(zip(before["cells"], after["cells"])) if a != b]
    if len(before["cells"]) != len(after["cells"]):
        changed.append(f"{len(before['cells'])} cells -> {len(after['cells'])}")
    return changed


def _run_all(page: Page) -> float:
    """Run > Run All Cells, then wait until no cell is queued or running and the kernel is idle; the seconds taken."""
    started = time.monotonic()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function("""() => {
        const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
        const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
        const status = panel.querySelector('.jp-Notebook-ExecutionIndicator').getAttribute('data-status');
        return prompts.some(p => /\\[\\d+\\]/.test(p)) && !prompts.some(p => p.includes('*')) && status === 'idle';
    }""", timeout=RUN_TIMEOUT_MS, polling=500)
    return time.monotonic() - started


def _cells(page: Page) -> list[dict]:
    """Each cell in the page: its prompt and its outputs (mime type and text)."""
    return page.evaluate("""() => [...document.querySelectorAll(
            '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')].map(cell => ({
        code: cell.classList.contains('jp-CodeCell'),
        prompt: (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
        outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
            mime: o.getAttribute('data-mime-type'), text: o.innerText})),
    }))""")


def _unexpected_errors(nb: nbformat.NotebookNode, cells: list[dict]) -> list[str]:
    """Every error a learner would see, except a grade cell's "Not passed" (expected on the handed-out code)."""
    problems = []
    for i, (cell, shown) in enumerate(zip(nb.cells, cells)):
        if cell.cell_type != "code":
            continue
        if not re.fullmatch(r"\s*\[\d+\]:\s*", shown["prompt"]):
            problems.append(f"cell {i} did not run (its prompt shows {shown['prompt']!r})")
        graded = cell.metadata.get("nbgrader", {}).get("grade", False)
        for out in shown["outputs"]:
            text = out["text"].strip()
            if out["mime"] == "application/vnd.jupyter.stderr" and not (graded and text.startswith("Not passed")):
                problems.append(f"cell {i} shows an error: {text[:600]}")
            problems += [f"cell {i}: {failure}: {text[:300]}" for failure in WIDGET_FAILURES if failure in text]
    return problems


def _screenshot_notebook(page: Page, folder: Path) -> None:
    """The whole notebook at 1440 px wide (in parts of at most 4,000 px), and each cell's pictures, HTML or widgets as
    they are shown."""
    outer = page.locator(_current(".jp-WindowedPanel-outer")).first
    chrome = WINDOW["height"] - outer.evaluate("e => e.clientHeight")
    total = outer.evaluate("e => e.scrollHeight")
    height = min(total + chrome, 4000)
    page.set_viewport_size({"width": WINDOW["width"], "height": height})
    step = outer.evaluate("e => e.clientHeight")
    for part, top in enumerate(range(0, total, step)):
        outer.evaluate(f"e => e.scrollTop = {top}")
        page.screenshot(path=folder / f"notebook-{part + 1:02}.png")
    cells = page.locator(_current(".jp-Notebook .jp-Cell"))
    for i in range(cells.count()):  # in the tall window, so that an output taller than 900 px is taken whole
        if cells.nth(i).locator(PICTURES).count():
            cells.nth(i).locator(".jp-Cell-outputArea").screenshot(path=folder / f"cell-{i:02}.png")
    page.set_viewport_size(WINDOW)


_SHOWN = """cell => {
    const area = cell.querySelector('.jp-Cell-outputArea').cloneNode(true);
    area.querySelectorAll('.widget-button, .widget-toggle-buttons, .widget-dropdown, .widget-slider, '
                          + '.widget-checkbox').forEach(control => control.remove());
    return area.innerHTML;
}"""


def _use(page: Page, control, kind: str) -> tuple[str, object]:
    """Use ``control`` once as a learner would: say what was done, and what undoes it (for ``_undo``)."""
    if kind == "toggle":
        was = control.locator("button.mod-active").first.inner_text()
        choice = control.locator("button:not(.mod-active)").first
        label = choice.inner_text()
        choice.click()
        return f"chose {label!r}", was
    if kind == "dropdown":
        options = control.locator("option").all_inner_texts()
        was = options[control.evaluate("e => e.selectedIndex")]
        label = options[(options.index(was) + 1) % len(options)]
        control.select_option(label=label)
        return f"chose {label!r}", was
    if kind == "slider":
        readout = control.locator(".widget-readout").first
        before = readout.inner_text()
        control.locator(".noUi-handle").first.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
        back = "ArrowLeft"
        if readout.inner_text() == before:  # at its end: step back instead
            page.keyboard.press("ArrowLeft")
            back = "ArrowRight"
        return f"moved from {before!r} to {readout.inner_text()!r}", back
    control.click()
    return "clicked", None


def _undo(page: Page, control, kind: str, undo: object) -> None:
    """Put ``control`` back as ``_use`` found it."""
    if kind == "toggle":
        control.locator("button", has_text=str(undo)).first.click()
    elif kind == "dropdown":
        control.select_option(label=str(undo))
    elif kind == "slider":
        control.locator(".noUi-handle").first.focus()
        page.keyboard.press(str(undo))
    elif kind == "checkbox":
        control.click()


def _kind(control) -> str:
    classes = control.evaluate("e => e.className + ' ' + e.tagName")
    for kind, mark in (("toggle", "widget-toggle-buttons"), ("slider", "widget-slider"), ("dropdown", "SELECT"),
                       ("checkbox", "INPUT")):
        if mark in classes:
            return kind
    return "button"


def _changed(page: Page, cell, before: str, timeout_s: float = 120) -> bool:
    """Wait until what the cell shows (its controls aside) differs from ``before`` and the kernel is idle; False once
    the kernel has handled the change (busy, then idle for 1 s) or, if it was never seen busy, after 15 s."""
    started, busy_seen, idle_since = time.monotonic(), False, None
    while time.monotonic() - started < timeout_s:
        page.wait_for_timeout(250)
        idle = _kernel_idle(page)
        if cell.evaluate(_SHOWN) != before:
            if idle:
                return True
            continue
        busy_seen = busy_seen or not idle
        idle_since = (idle_since or time.monotonic()) if idle else None
        if (busy_seen and idle_since and time.monotonic() - idle_since > 1) or (
                not busy_seen and time.monotonic() - started > 15):
            return False
    return False


def _exercise_widgets(page: Page, folder: Path) -> tuple[list[str], int]:
    """Use every enabled widget control. A toggle, dropdown, slider or checkbox is used from the state Run All left
    (and put back afterwards); then the buttons, in order, and any that changed nothing once more after the others
    (a stepper's "< previous" at its first moment does nothing until "next" has moved it). The problems, and how
    many uses."""
    cells = page.locator(_current(".jp-Notebook .jp-Cell"))
    controls = []
    for i in range(cells.count()):
        found = cells.nth(i).locator(CONTROLS)
        controls += [(i, j, _kind(found.nth(j))) for j in range(found.count())]
    pending = [c for c in controls if c[2] != "button"] + [c for c in controls if c[2] == "button"]
    used, problems = 0, []
    for attempt in (1, 2):
        inert = []
        for i, j, kind in pending:
            cell = cells.nth(i)
            control = cell.locator(CONTROLS).nth(j)
            if control.evaluate("e => Boolean(e.disabled)"):
                inert.append((i, j, kind))
                continue
            before = cell.evaluate(_SHOWN)
            control.scroll_into_view_if_needed()
            done, undo = _use(page, control, kind)
            used += 1
            if _changed(page, cell, before):
                page.screenshot(path=folder / f"cell-{i:02}-widget-{j}-{kind}.png")
                if kind != "button":
                    used_state = cell.evaluate(_SHOWN)
                    _undo(page, control, kind, undo)
                    _changed(page, cell, used_state)
            elif kind == "button" and attempt == 1:
                inert.append((i, j, kind))
            else:
                problems.append(f"cell {i}: the {kind} #{j} ({done}) did not change what the cell shows")
        pending = inert
    return problems, used


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_a_learner_runs_the_notebook_in_jupyterlab(path: Path, jupyterlab: Lab, browser: Browser, screenshots: Path):
    """The notebook opens clean, hides nbgrader's instructor tools, runs all with only the expected errors, and each
    of its widgets changes what it shows when used; its screenshots are saved."""
    folder = screenshots / _name(path).replace("/", "__").removesuffix(".ipynb")
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(path, as_version=4)
    page = browser.new_page(viewport=WINDOW)
    crashes: list[str] = []
    page.on("pageerror", lambda error: crashes.append(str(error)))
    problems: list[str] = []
    try:
        started = time.monotonic()
        # ?reset: a fresh workspace, not the tabs the previous notebook left open
        page.goto(f"{jupyterlab.url}/lab/tree/{_name(path)}?reset&token={jupyterlab.token}")
        _wait_until_ready(page)
        opened = time.monotonic() - started
        page.screenshot(path=folder / "opened.png")
        opening = _what_opening_changed(page, jupyterlab, path) if _dirty(page) else []
        problems += [f"opening it alone changes {c}" for c in opening]
        menus = page.locator(".lm-MenuBar-itemLabel").all_inner_texts()
        if "Nbgrader" in menus or page.locator(INSTRUCTOR_TOOLS).count():
            problems.append(f"nbgrader's instructor tools are shown (menus {menus})")
        ran = _run_all(page)
        cells = _cells(page)
        assert len(cells) == len(nb.cells), f"the page shows {len(cells)} cells, the file has {len(nb.cells)}"
        problems += _unexpected_errors(nb, cells)
        mark = time.monotonic()
        _screenshot_notebook(page, folder)
        pictures, mark = time.monotonic() - mark, time.monotonic()
        widget_problems, used = _exercise_widgets(page, folder)
        problems += widget_problems
        problems += [f"the page raised {crash}" for crash in crashes]
        sys.stderr.write(f"{_name(path)}: opened in {opened:.1f} s ({'; '.join(opening) or 'clean'}), ran all in {ran:.1f} s, screenshots "
                         f"{pictures:.1f} s, {used} widget uses in {time.monotonic() - mark:.1f} s, "
                         f"{time.monotonic() - started:.1f} s in all\n")
    finally:
        page.close()
        for session in jupyterlab.api("GET", "/api/sessions"):
            jupyterlab.api("DELETE", f"/api/sessions/{session['id']}")
    assert not problems, f"{_name(path)} (screenshots in {folder}):\n" + "\n".join(problems)
