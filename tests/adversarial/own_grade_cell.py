"""The learner marks a cell of their own as a grade cell worth 100 points."""
# %% grade-cell my-points 100
print("all good")
