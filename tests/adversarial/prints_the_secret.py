"""A cell prints the grading secret, hoping it lands in the autograded notebook and the feedback."""
# %% cell
import os

print(os.environ.get("{SECRET_ENV}"), dict(os.environ))
