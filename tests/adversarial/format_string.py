"""A format string reads a private attribute, where no attribute access is written."""
# %% service
import sandbox

where = "{0._runtime}".format(sandbox)
