"""A copy of a graded part's cell, with the same nbgrader id, that does nothing, placed before the real one."""
# %% grade-cell no-double-charge 4
pass
