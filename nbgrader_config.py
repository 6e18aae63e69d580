"""nbgrader's configuration for Chaos Dojo: the labs are the course (see autograder/nbgrader.py)."""

import os

from autograder.nbgrader import configure

c = get_config()  # noqa: F821  (nbgrader provides get_config when it loads this file)
configure(c, os.path.dirname(os.path.abspath(__file__)))
