"""A busy loop that swallows whatever is raised into it, the sandbox's wall-clock stop included."""
# %% service
_generated = create_app


def create_app():
    app = _generated()

    @app.middleware("http")
    async def spin(request, call_next):
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass

    return app
