"""Test-wide set-up: nothing a test run writes lands in the checkout; child processes hash as the course's do.

Hypothesis keeps a cache (``.hypothesis/``, its example database and the constants it collects from the
code under test) in the current directory unless told otherwise; the notebooks, nbgrader runs and
subprocesses that the tests start inherit this environment, so they write there too.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", tempfile.mkdtemp(prefix="chaos-dojo-hypothesis-"))

# The notebooks' kernels and the processes the tests start hash strings as the course's do (`dojo course`, Binder,
# the grader: PYTHONHASHSEED=0, see sandbox/_determinism.py); tests about other seeds set their own.
os.environ["PYTHONHASHSEED"] = "0"
