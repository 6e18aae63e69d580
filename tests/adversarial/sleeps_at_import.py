"""The service cell blocks at import for ever (real time, before any world runs)."""
# %% service
import time

time.sleep(10**6)
