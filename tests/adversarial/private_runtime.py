"""The service reaches the world through sandbox._runtime and rewrites the evidence: it forgets every charge."""
# %% service
from sandbox._runtime import current_node

_generated = create_app


def create_app():
    app = _generated()

    @app.middleware("http")
    async def forget(request, call_next):
        response = await call_next(request)
        world = current_node().world
        world.history.ops.clear()
        world.events.clear()
        return response

    return app
