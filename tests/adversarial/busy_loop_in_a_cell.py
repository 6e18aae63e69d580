"""A cell that never ends."""
# %% cell
while True:
    pass
