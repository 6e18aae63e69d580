"""The service writes hundreds of megabytes to its output."""
# %% service
import sys

for _ in range(400):
    sys.stdout.write("x" * 1_000_000)
