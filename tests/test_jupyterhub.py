"""deploy/jupyterhub: the Zero to JupyterHub set-up for a room, checked as far as a machine without Kubernetes can.

The chart's default values and values schema are vendored in tests/data/ (zero-to-jupyterhub-k8s, main at 48ea50e,
July 2026, after chart 4.4.0): Helm merges a config over the defaults and validates the result against the schema,
and so does this.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from autograder.nbgrader import EXCHANGE_ENV, GRADEBOOK_ENV
from autograder.seeds import GRADING_SECRET_ENV
from sandbox.cli import START_NOTEBOOK

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "jupyterhub"
DATA = Path(__file__).resolve().parent / "data"
CONFIG = yaml.safe_load((DEPLOY / "config.yaml").read_text())
GRADER = yaml.safe_load((DEPLOY / "grader.yaml").read_text())
EXCHANGE = yaml.safe_load((DEPLOY / "exchange.yaml").read_text())
COURSE_IN_IMAGE = "/srv/chaos-dojo"


def _merge(defaults: dict, values: dict) -> dict:
    """Helm's merge of user values over a chart's: maps merge key by key, anything else replaces."""
    merged = dict(defaults)
    for key, value in values.items():
        both_maps = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        merged[key] = _merge(defaults[key], value) if both_maps else value
    return merged


def _validate(values: dict) -> None:
    schema = json.loads((DATA / "z2jh-values.schema.json").read_text())
    jsonschema.validate(_merge(yaml.safe_load((DATA / "z2jh-values.yaml").read_text()), values), schema)


def test_the_config_is_valid_values_for_the_chart():
    _validate(CONFIG)


@pytest.mark.parametrize("mistake", [
    {"singleuser": {"storage": {"capacity": 2}}},
    {"singleuser": {"defaultUrl": ["/lab"]}},
    {"singleuser": {"image": {"name": "x", "tag": "1", "pulPolicy": "Always"}}},
])
def test_the_schema_check_catches_a_wrong_value(mistake):
    """The check is not vacuous: a mistyped key or a value of the wrong type is refused."""
    with pytest.raises(jsonschema.ValidationError):
        _validate(_merge(CONFIG, mistake))


def test_learners_and_the_grader_run_the_same_image():
    image = CONFIG["singleuser"]["image"]
    assert GRADER["spec"]["containers"][0]["image"] == f"{image['name']}:{image['tag']}"
    assert f"--image-name {image['name']}:{image['tag']}" in (DEPLOY / "README.md").read_text()
    assert f"--target-repo-dir {COURSE_IN_IMAGE}" in (DEPLOY / "README.md").read_text()


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_everyone_shares_one_exchange_where_the_course_looks_for_it():
    claim = EXCHANGE["metadata"]["name"]
    assert EXCHANGE["kind"] == "PersistentVolumeClaim" and EXCHANGE["spec"]["accessModes"] == ["ReadWriteMany"]
    storage = CONFIG["singleuser"]["storage"]
    volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in storage["extraVolumes"]}
    mounts = {m["name"]: m["mountPath"] for m in storage["extraVolumeMounts"]}
    learner_path = mounts[next(name for name, c in volumes.items() if c == claim)]
    assert CONFIG["singleuser"]["extraEnv"][EXCHANGE_ENV] == learner_path
    grader = GRADER["spec"]
    volume = next(v["name"] for v in grader["volumes"] if v["persistentVolumeClaim"]["claimName"] == claim)
    container = grader["containers"][0]
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[volume] == learner_path
    assert _env(container)[EXCHANGE_ENV] == learner_path


def test_the_grading_secret_and_gradebook_reach_the_grader_only():
    env = _env(GRADER["spec"]["containers"][0])
    assert env[GRADING_SECRET_ENV] == {"secretKeyRef": {"name": "chaos-dojo-grading", "key": "secret"}}
    assert env[GRADEBOOK_ENV] == {"secretKeyRef": {"name": "chaos-dojo-grading", "key": "gradebook"}}
    assert env["PYTHONHASHSEED"] == CONFIG["singleuser"]["extraEnv"]["PYTHONHASHSEED"] == "0"
    text = (DEPLOY / "config.yaml").read_text()
    assert GRADING_SECRET_ENV not in text and GRADEBOOK_ENV not in text


def test_a_learner_lands_on_the_first_notebook_of_their_copy():
    url = CONFIG["singleuser"]["defaultUrl"]
    assert url == f"/lab/tree/chaos-dojo/{START_NOTEBOOK.as_posix()}"


def test_the_start_hook_copies_the_course_once_and_keeps_the_learners_work(tmp_path):
    """The postStart command, run as Kubernetes runs it (sh -c, the learner's HOME), with the image's copy of the
    course at a temporary place instead of /srv/chaos-dojo."""
    image = tmp_path / "image"
    image.mkdir()
    for name in ("course", "labs"):
        shutil.copytree(ROOT / name, image / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "nbgrader_config.py", image / "nbgrader_config.py")
    command = CONFIG["singleuser"]["lifecycleHooks"]["postStart"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"] and COURSE_IN_IMAGE in command[2]
    script = command[2].replace(COURSE_IN_IMAGE, str(image))
    home = tmp_path / "home"
    home.mkdir()

    def start() -> None:
        subprocess.run(["sh", "-c", script], env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, check=True,
                       timeout=60)

    start()
    copy = home / "chaos-dojo"
    assert (copy / START_NOTEBOOK).is_file() and (copy / "labs" / "06-resilience" / "lab.py").is_file()
    assert (copy / "nbgrader_config.py").is_file()
    mine = copy / "labs" / "02-idempotency" / "lab.ipynb"
    mine.write_text("the learner's work")
    start()  # the server restarts: the learner's notebook is kept
    assert mine.read_text() == "the learner's work"
