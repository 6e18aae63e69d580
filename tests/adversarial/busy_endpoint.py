"""An endpoint that never awaits: a busy loop in the service itself."""
# %% service
_generated = create_app


def create_app():
    app = _generated()

    @app.middleware("http")
    async def spin(request, call_next):
        while True:
            pass

    return app
