"""The sandbox's HTTP against TestClient (and what uvicorn does, where TestClient differs): each behaviour issue 11
lists, from the request a client sends to the response it reads."""

from __future__ import annotations

import warnings

from fastapi import FastAPI, Response

import sandbox

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns that it prefers httpx2
    from fastapi.testclient import TestClient


def parity_app() -> FastAPI:
    app = FastAPI()

    @app.get("/str/{s}")
    async def read_str(s: str):
        return {"s": s}

    @app.get("/files/{p:path}")
    async def read_path(p: str):
        return {"p": p}

    @app.get("/thing")
    async def thing():
        return {"a": "thing with a body"}

    @app.head("/thing")
    async def thing_head():
        return Response(content=b"a body HEAD must not carry", media_type="text/plain")

    @app.get("/nothing")
    async def nothing():
        return Response(status_code=204, content=b"a body a 204 must not carry")

    @app.get("/unchanged")
    async def unchanged():
        return Response(status_code=304, content=b"a body a 304 must not carry")

    @app.get("/cookies")
    async def cookies():
        response = Response(content=b"ok", headers={"X-Upper": "Yes"})
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        response.set_cookie("c", "3")
        return response

    async def silent(scope, receive, send):  # a raw ASGI app that returns without responding
        return

    app.mount("/silent", silent)
    return app


REQUESTS = [
    ("GET", "/str/a%20b", {}),
    ("GET", "/files/a%2Fb/c%20d", {}),
    ("HEAD", "/thing", {}),
    ("GET", "/nothing", {}),
    ("GET", "/unchanged", {}),
    ("GET", "/cookies", {}),
]


#: Where TestClient differs from a real server: a body written on a 204 or a 304 reaches its caller.
BODILESS = ("/nothing", "/unchanged")


def in_world(requests):
    world = sandbox.World(seed=1)
    world.add_service("api", parity_app)
    responses = []

    async def caller(client: sandbox.Client) -> None:
        for method, path, kwargs in requests:
            responses.append(await client.http.request(method, f"http://api{path}", **kwargs))

    world.add_client("caller", caller)
    world.run()
    return world, responses


def test_the_sandbox_answers_as_testclient_does():
    """Percent-encoded paths decoded (a path parameter too), no body on HEAD, 204 or 304, repeated headers kept
    and names read in any case: status, body bytes and the headers a client reads agree with TestClient's."""
    _world, ours = in_world(REQUESTS)
    with TestClient(parity_app()) as client:
        theirs = [client.request(method, path, **kwargs) for method, path, kwargs in REQUESTS]
    for (method, path, _), a, b in zip(REQUESTS, ours, theirs):
        if path in BODILESS:  # TestClient hands the body on; a server (uvicorn's h11 and httptools) sends none
            assert (a.status_code, a.content) == (b.status_code, b""), (method, path, a.content)
            continue
        assert (a.status_code, a.content) == (b.status_code, b.content), (method, path, a.content, b.content)
        for name in ("content-type", "content-length", "x-upper"):
            assert a.headers.get(name) == b.headers.get(name), (method, path, name)
    assert ours[0].json() == {"s": "a b"} and ours[1].json() == {"p": "a/b/c d"}
    cookies = ours[5]
    assert cookies.headers.get_list("set-cookie") == theirs[5].headers.get_list("set-cookie")
    assert len(cookies.headers.get_list("Set-Cookie")) == 3
    assert cookies.headers["X-UPPER"] == cookies.headers["x-upper"] == "Yes"
    assert cookies.headers["set-cookie"] == theirs[5].headers["set-cookie"]  # joined with ", ", as httpx joins


def test_an_app_that_returns_without_responding_answers_as_uvicorn_does():
    """uvicorn answers 500 "Internal Server Error" (text/plain) and logs the error; the sandbox the same, the
    error in the world's errors, naming the request."""
    world, (response,) = in_world([("GET", "/silent/x", {})])
    assert response.status_code == 500 and response.text == "Internal Server Error"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert [e for e in world.errors if "GET /silent/x" in e.where and "without sending a response" in str(e)]
