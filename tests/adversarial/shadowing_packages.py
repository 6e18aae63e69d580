"""Packages handed in beside the notebook that would shadow the lab and the grader, and an edited lab.py."""
# %% file lab/__init__.py
def grade(*args, **kwargs):
    print("Passed")


def check(*args, **kwargs):
    print("Passed")
# %% file autograder/__init__.py
raise SystemExit("the grader is mine")
# %% file lab.py
def grade(*args, **kwargs):
    print("Passed")
