"""The service allocates far more memory than a service needs, at import."""
# %% service
HOARD = bytearray(16 * 1024**3)
