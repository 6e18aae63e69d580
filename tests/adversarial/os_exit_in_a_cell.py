"""A cell ends the kernel with os._exit before any grade cell runs."""
# %% cell
import os

os._exit(0)
