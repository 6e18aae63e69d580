"""The handed-in notebook is not a notebook: a truncated file."""
# %% notebook-text
{"cells": [{"cell_type": "code", "source": "def create_app(
