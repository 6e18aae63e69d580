"""The service cell deletes create_app."""
# %% service
del create_app
