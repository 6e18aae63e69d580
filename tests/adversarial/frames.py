"""The service climbs the stack from a traceback to the runner's frames (and its job)."""
# %% service
try:
    raise RuntimeError
except RuntimeError as exc:
    caller = exc.__traceback__.tb_frame.f_back
