"""The service finds the world's history through the garbage collector and empties it."""
# %% service
import gc

for thing in gc.get_objects():
    if type(thing).__name__ == "History":
        thing.ops.clear()
