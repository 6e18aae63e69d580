"""The sandbox's HTTP against TestClient (and what uvicorn does, where TestClient differs): each behaviour issue 11
lists, from the request a client sends to the response it reads."""

from __future__ import annotations

import string
import warnings

import httpx
import pytest
import svc_surface
from fastapi import FastAPI, Request, Response
from fastapi.middleware.gzip import GZipMiddleware
from hypothesis import given, settings
from hypothesis import strategies as st

import sandbox
from sandbox.errors import InvalidParameterError
from sandbox.http import build_request

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


# --- the client side: what a callee receives, against what httpx sends ------------------------------------------


_HTTPX = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
_TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=12)
_VALUE = st.text(alphabet=string.ascii_letters + string.digits + " -_./;=", max_size=20)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_PARAMS = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.text(max_size=6) | st.integers() | st.booleans() | st.none() | st.lists(st.text(max_size=4), max_size=2),
    max_size=3,
)


@st.composite
def httpx_calls(draw):
    """A call as a service makes it: any method, a URL with any characters (spaces, non-ASCII, '%', dot
    segments, a fragment), perhaps params, headers (some overriding httpx's defaults) and a body of any kind."""
    segments = draw(st.lists(st.text(alphabet=st.characters(exclude_characters="/?#"), max_size=6), max_size=3))
    url = "http://api/" + "/".join(segments)
    if draw(st.booleans()):
        url += "?" + draw(st.text(alphabet=st.characters(exclude_characters="#"), max_size=10))
    if draw(st.integers(0, 4)) == 0:
        url += "#" + draw(st.text(max_size=4))
    kwargs = {}
    if draw(st.booleans()):
        kwargs["params"] = draw(_PARAMS)
    headers = draw(st.dictionaries(_TOKEN | st.sampled_from(["Accept", "User-Agent", "Content-Type"]), _VALUE, max_size=3))
    if headers:
        kwargs["headers"] = headers
    body = draw(st.sampled_from(["none", "json", "content", "text", "data"]))
    if body == "json":
        kwargs["json"] = draw(_JSON)
    elif body == "content":
        kwargs["content"] = draw(st.binary(max_size=20))
    elif body == "text":
        kwargs["content"] = draw(st.text(max_size=10))
    elif body == "data":
        kwargs["data"] = draw(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=3))
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]))
    return method, url, kwargs


@settings(max_examples=300, deadline=None, database=None)
@given(httpx_calls())
def test_a_request_goes_out_exactly_as_httpx_sends_it(call):
    """Target (percent-encoded, dot segments resolved, fragment dropped, params replacing the query), header
    lines in httpx's order (Host, its defaults unless overridden, the caller's, the body's), and body bytes (JSON
    as httpx encodes it: compact, UTF-8) are httpx's own. (Before: no default headers, so a GZip-ing callee did not
    compress; content-length: 0 on a GET; a raw UnicodeEncodeError for a non-Latin-1 query; ASCII-escaped JSON.)"""
    method, url, kwargs = call
    try:
        theirs = _HTTPX.build_request(method, url, **kwargs)
    except (httpx.InvalidURL, UnicodeEncodeError) as exc:  # a control character, a lone surrogate: refused
        with pytest.raises(InvalidParameterError, match="is not a valid URL"):
            build_request(method, url, **kwargs)
        assert str(exc)
        return
    ours = build_request(method, url, **kwargs)
    path, _, query = theirs.url.raw_path.partition(b"?")
    assert (ours.path.encode(), ours.query_string) == (path, query)
    assert ours.headers == [(name.lower(), value) for name, value in theirs.headers.raw]
    assert ours.body == theirs.read()


def test_a_multipart_form_goes_out_as_httpx_sends_it_with_a_boundary_from_the_world():
    """A form with files is httpx's multipart body; its boundary is drawn from the world's seeded streams, so the
    same seed sends the same bytes."""
    files = {"upload": ("notes.txt", b"hello", "text/plain")}
    ours = build_request("POST", "http://api/upload", data={"a": "1"}, files=files, boundary=lambda: "b0undary")
    theirs = _HTTPX.build_request("POST", "http://api/upload", data={"a": "1"}, files=files,
                                  headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
    assert ours.body == theirs.read()
    assert dict(ours.headers)[b"content-type"] == b"multipart/form-data; boundary=b0undary"


def test_bad_request_parts_fail_with_the_bad_value():
    with pytest.raises(InvalidParameterError, match="'é'.*Latin-1|Latin-1.*'é'|percent-encode"):
        build_request("GET", "http://api/x", headers={"x-name": "€uro"})
    with pytest.raises(InvalidParameterError, match="nan"):
        build_request("POST", "http://api/x", json={"price": float("nan")})
    with pytest.raises(InvalidParameterError, match="one of json="):
        build_request("POST", "http://api/x", json={}, content=b"x")
    with pytest.raises(InvalidParameterError, match="content=3"):
        build_request("POST", "http://api/x", content=3)


def test_a_gzip_ing_callee_compresses_for_a_sandbox_caller_as_for_httpx():
    """httpx's Accept-Encoding reaches the callee, so GZipMiddleware compresses (the caller reads the decoded
    body, as from httpx, which decodes it)."""

    def gzip_app() -> FastAPI:
        app = FastAPI()
        app.add_middleware(GZipMiddleware, minimum_size=10)

        @app.get("/big")
        async def big(request: Request):
            return {"data": "x" * 500, "accept_encoding": request.headers.get("accept-encoding"),
                    "user_agent": request.headers.get("user-agent")}

        return app

    world = sandbox.World(seed=1)
    world.add_service("api", gzip_app)
    out = {}

    async def caller(client: sandbox.Client) -> None:
        out["r"] = await client.http.get("http://api/big")

    world.add_client("caller", caller)
    world.run()
    r = out["r"]
    assert r.headers["content-encoding"] == "gzip"
    assert r.json()["accept_encoding"] == "gzip, deflate"
    assert r.json()["user_agent"] == f"python-httpx/{httpx.__version__}"


@pytest.mark.parametrize("path, error", [
    ("/bare/stream-fails", "the export failed midway"),
    ("/bare/half/x", "the app returned without completing its response"),
])
def test_a_response_cut_short_reaches_the_caller_as_a_closed_connection(path, error):
    """Under uvicorn, a StreamingResponse that raises midway (or an app that returns mid-body) has the connection
    closed mid-body and httpx raises RemoteProtocolError; in a world the caller gets sandbox.IncompleteResponse,
    an httpx.RemoteProtocolError, and the error is in the world's errors. (Before: a complete 200.)"""
    world = sandbox.World(seed=1)
    world.add_service("api", svc_surface.create_bare_app)
    out = {}

    async def caller(client: sandbox.Client) -> None:
        try:
            out["response"] = await client.http.get(f"http://api{path}")
        except httpx.RemoteProtocolError as exc:
            out["error"] = exc

    world.add_client("caller", caller)
    world.run()
    assert "response" not in out
    assert isinstance(out["error"], sandbox.IncompleteResponse)
    assert f"GET http://api{path}" in str(out["error"]) and "before the response was complete" in str(out["error"])
    assert [e.message for e in world.errors] == [error]
    assert [e[1] for e in world.recorder.log if e[1].startswith("http.response")] == ["http.response.incomplete"]


def test_a_non_latin_1_query_is_percent_encoded_and_a_bodiless_get_has_no_content_length():
    """Two of the client bullets of issue 11, spelled out: 'q=€' goes out as httpx sends it ('q=%E2%82%AC', where
    the old client raised a raw UnicodeEncodeError), and a GET without a body carries no content-length (the old
    client sent 'content-length: 0'); a POST without one carries 'content-length: 0', as httpx's does."""
    get = build_request("GET", "http://api/search?q=€ 1")
    assert get.query_string == b"q=%E2%82%AC%201"
    assert b"content-length" not in dict(get.headers)
    assert dict(build_request("POST", "http://api/orders").headers)[b"content-length"] == b"0"
    world, (response,) = in_world([("GET", "/str/€?q=€", {})])
    assert response.json() == {"s": "€"}
