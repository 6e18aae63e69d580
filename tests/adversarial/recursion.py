"""The service cell recurses without end at import."""
# %% service
def down(n):
    return down(n + 1)


down(0)
