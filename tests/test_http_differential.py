"""The same FastAPI app (tests/svc_surface.py: parameters of every kind, bodies, forms, files, response classes,
streaming, middleware, routers, a mounted app, exception handlers, HEAD and OPTIONS) served three ways, the same
requests sent to each: by the sandbox in a world, by FastAPI's TestClient, and by a real uvicorn on 127.0.0.1 called
with httpx. Status, body bytes and headers must agree; the few differences that remain are by design and are
listed in the README ("HTTP, as uvicorn and httpx give it") and in DIFFERENCES below.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
import svc_surface
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sandbox

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns that it prefers httpx2
    from fastapi.testclient import TestClient

HERE = Path(__file__).parent

#: Headers that belong to the connection, not to the app's answer: a real server adds them (date, server; chunked
#: transfer for a streamed body), the sandbox and TestClient have no connection to describe.
CONNECTION_HEADERS = frozenset({"date", "server", "transfer-encoding", "connection", "keep-alive"})

#: Where TestClient is not what a deployed service meets (each is also in the README): it sends its own
#: User-Agent ("testclient"); it hands on a body written on a 204 or 304; with raise_server_exceptions=False an
#: endpoint that fails mid-stream reaches the caller as the part sent so far.
DIFFERENCES = {
    "user-agent": "TestClient sends 'testclient'; httpx (and the sandbox) 'python-httpx/<version>'",
    "bodiless": "TestClient passes on a body written on a 204 or 304; a server sends none",
    "cut short": "TestClient returns what was sent before a streaming body failed; a server closes the connection",
    "latin-1 header": "TestClient decodes response header values as UTF-8 and fails (500) on a Latin-1 one, such as "
                      "a path with 'ü' echoed in a header; a server sends the bytes and httpx reads them",
    "unsendable header": "TestClient hands on a header value HTTP/1.1 cannot carry (a path ending in a space, echoed in "
                         "a header); uvicorn's h11 refuses to write it and closes the connection",
}

COOKIE = {"cookie": "session=abc123; other=1"}
FILE = {"file": ("notes.txt", b"hello, file\n" * 3, "text/plain")}

#: (method, path, keyword arguments as httpx takes them), one or more per feature of svc_surface.
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/path/7/seven/red", {}),
    ("GET", "/path/x/seven/red", {}),  # 422: not an int
    ("GET", "/path/7/seven/blue", {}),  # 422: not in the enum
    ("GET", "/path/7/a%20b%2Fc/green", {}),
    ("GET", "/path/7/ünï code/green", {}),
    ("GET", "/floats/2.5", {}),
    ("GET", "/floats/-1", {}),
    ("GET", "/files/a/b/c.txt", {}),
    ("GET", "/files/ends-in-a-space ", {}),  # echoed in a header whose value may not end in a space: closed
    ("GET", "/files/a%2Fb/c%20d", {}),
    ("GET", "/query", {}),
    ("GET", "/query", {"params": {"q": "hello world", "n": 5, "flag": "yes", "tags": ["a", "b"], "item-id": "x1"}}),
    ("GET", "/query?q=ü&tags=1&tags=2&flag=0", {}),
    ("GET", "/query", {"params": {"n": 500}}),  # 422: le=100
    ("GET", "/query", {"params": {"n": "many"}}),
    ("GET", "/headers", {"headers": {"X-Token": "t1"}}),
    ("GET", "/headers", {"headers": [("x-token", "a"), ("x-token", "b")]}),
    ("GET", "/cookies", {"headers": COOKIE}),
    ("GET", "/cookies", {}),
    ("GET", "/raw?b=2&a=1", {}),
    ("POST", "/items", {"json": {"name": "lamp", "price": 9.5, "tags": ["home", "light"]}}),
    ("POST", "/items", {"json": {"name": "", "price": -1}}),
    ("POST", "/items", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("POST", "/items", {}),
    ("PUT", "/items/3", {"json": {"item": {"name": "lamp", "price": 2}, "note": "!"}}),
    ("PATCH", "/embed", {"json": {"item": {"name": "desk", "price": 120.0}}}),
    ("PATCH", "/embed", {"json": {"name": "desk", "price": 120.0}}),
    ("POST", "/raw-body", {"content": "ünïcode text"}),
    ("POST", "/raw-body", {"content": bytes(range(256))}),
    ("POST", "/form", {"data": {"name": "lamp", "qty": "3"}}),
    ("POST", "/form", {"data": {"qty": "x"}}),
    ("POST", "/upload", {"files": FILE, "data": {"label": "mine"}}),
    ("POST", "/upload", {"data": {"label": "no file"}}),
    ("POST", "/bytes", {"files": {"file": ("b.bin", bytes(range(10)), "application/octet-stream")}}),
    ("GET", "/text", {}),
    ("GET", "/html", {}),
    ("GET", "/big", {}),
    ("GET", "/big", {"headers": {"accept-encoding": "identity"}}),
    ("GET", "/redirect", {}),
    ("GET", "/stream", {"params": {"n": 4}}),
    ("GET", "/stream-fails", {}),  # behind BaseHTTPMiddleware: the body is ended, then the error logged
    ("GET", "/bare/stream-fails", {}),  # no middleware: the connection is closed mid-body
    ("GET", "/bare/stream", {}),
    ("GET", "/status/202", {}),
    ("GET", "/status/404", {}),
    ("GET", "/status/204", {}),
    ("GET", "/status/304", {}),
    ("GET", "/set-cookies", {}),
    ("DELETE", "/items/3", {}),
    ("GET", "/background", {}),
    ("GET", "/http-error/409", {}),
    ("GET", "/http-error/503", {}),
    ("GET", "/teapot", {}),
    ("GET", "/crash", {}),
    ("POST", "/strict/items", {"json": {"name": ""}}),
    ("GET", "/middleware/refuse", {}),
    ("GET", "/v1/whoami", {"headers": {"x-tenant": "acme"}}),
    ("GET", "/v1/whoami", {"headers": {"x-tenant": "forbidden"}}),
    ("PUT", "/v1/any", {}),
    ("DELETE", "/v1/any", {}),  # 405
    ("GET", "/sub/hello/ada", {}),
    ("GET", "/sub/missing", {}),
    ("GET", "/nowhere", {}),
    ("HEAD", "/text", {}),
    ("HEAD", "/big", {}),
    ("OPTIONS", "/items", {}),
    ("OPTIONS", "/items", {"headers": {"origin": "http://shop.example", "access-control-request-method": "POST",
                                       "access-control-request-headers": "x-tenant"}}),
    ("OPTIONS", "/items", {"headers": {"origin": "http://evil.example", "access-control-request-method": "POST"}}),
    ("GET", "/text", {"headers": {"origin": "http://shop.example"}}),
]


def normalise(status: int | str, headers: list[tuple[str, str]], content: bytes) -> tuple:
    """What a caller reads: the status, the body, the app's headers (lower-cased, in a stable order)."""
    kept = sorted((k.lower(), v) for k, v in headers if k.lower() not in CONNECTION_HEADERS)
    # Starlette writes Allow from a set of method names, whose order follows the process's string hashing (a
    # random salt per process under uvicorn; per replica, from the seed, in a world): compare it as a set.
    kept = [(k, ", ".join(sorted(v.split(", "))) if k == "allow" else v) for k, v in kept]
    return status, content, kept


# --- the three servers ------------------------------------------------------------------------------------------------


def in_sandbox(calls: list[tuple[str, str, dict]]) -> list[tuple]:
    world = sandbox.World(seed=1)
    world.add_service("api", svc_surface.create_app)
    results: list[tuple] = []

    async def caller(client: sandbox.Client) -> None:
        for method, path, kwargs in calls:
            try:
                r = await client.http.request(method, f"http://api{path}", **kwargs)
            except httpx.RemoteProtocolError:
                results.append(("closed",))
                continue
            results.append(normalise(r.status_code, r.headers.multi_items(), r.content))

    world.add_client("caller", caller)
    world.run()
    assert world.errors == [] or all(e.node.startswith("api-") for e in world.errors), world.errors
    assert len(results) == len(calls)
    return results


def with_testclient(calls: list[tuple[str, str, dict]]) -> list[tuple]:
    results = []
    with TestClient(svc_surface.create_app(), base_url="http://api", raise_server_exceptions=False,
                    follow_redirects=False) as client:
        for method, path, kwargs in calls:
            r = client.request(method, path, **kwargs)
            results.append(normalise(r.status_code, r.headers.multi_items(), r.content))
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def uvicorn_url():
    """A real uvicorn serving svc_surface on 127.0.0.1, in its own process, for this module's tests."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "svc_surface:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "critical", "--no-access-log"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=HERE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                httpx.get(url + "/text", timeout=1.0)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not start: {server.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def with_uvicorn(url: str, calls: list[tuple[str, str, dict]]) -> list[tuple]:
    results = []
    # A new connection for each request: after an endpoint fails mid-body uvicorn closes the connection, and a
    # request sent on it at that moment would be reset (a race of the test's, not a difference of the servers').
    with httpx.Client(base_url=url, headers={"host": "api"}, follow_redirects=False,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for method, path, kwargs in calls:
            try:
                r = client.request(method, path, **kwargs)
            except httpx.RemoteProtocolError:
                results.append(("closed",))
                continue
            results.append(normalise(r.status_code, r.headers.multi_items(), r.content))
    return results


# --- the comparisons ---------------------------------------------------------------------------------------------------


def test_the_sandbox_answers_every_request_as_uvicorn_does(uvicorn_url):
    """Every call of CALLS: the same status, body bytes and headers from the sandbox as from uvicorn + httpx."""
    ours = in_sandbox(CALLS)
    theirs = with_uvicorn(uvicorn_url, CALLS)
    differ = [(call, a, b) for call, a, b in zip(CALLS, ours, theirs) if a != b]
    assert differ == [], "\n\n".join(f"{call}\n  sandbox: {a}\n  uvicorn: {b}" for call, a, b in differ)


def test_the_sandbox_answers_as_testclient_does_but_where_testclient_is_not_a_server():
    """The same against TestClient, but for DIFFERENCES (each shown here to be what differs, nothing else)."""
    ours = in_sandbox(CALLS)
    theirs = with_testclient(CALLS)
    explained = []
    for call, a, b in zip(CALLS, ours, theirs):
        if a == b:
            continue
        if a == ("closed",) and call[1].endswith(" "):
            assert b[0] == 200 and any(v.endswith(" ") for _, v in b[2]), (call, b)
            explained.append(("unsendable header", call[1]))
        elif a == ("closed",):
            assert b[0] == 200 and b[1] == b"first chunk\n", (call, b)
            explained.append(("cut short", call[1]))
        elif a[0] in (204, 304) and (a[0], a[2]) == (b[0], b[2]) and a[1] == b"":
            explained.append(("bodiless", call[1]))
        elif b[0] == 500 and not call[1].isascii() and any(not v.isascii() for _, v in a[2]):
            explained.append(("latin-1 header", call[1]))
        else:
            assert call[1] == "/headers" and a[1].replace(b"python-httpx/" + httpx.__version__.encode(), b"testclient") == b[1], (call, a, b)
            explained.append(("user-agent", call[1]))
    assert {why for why, _ in explained} <= set(DIFFERENCES)
    assert ("cut short", "/bare/stream-fails") in explained
    assert ("unsendable header", "/files/ends-in-a-space ") in explained


@st.composite
def odd_requests(draw):
    """Paths, queries and headers with any characters a caller may send (spaces, non-ASCII, %, reserved ones)."""
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8)
    which = draw(st.sampled_from(["path", "rest", "query", "raw", "header"]))
    if which == "path":
        return ("GET", f"/path/{draw(st.integers(-5, 5))}/{draw(text).replace('/', '_').replace('?', '_').replace('#', '_')}/red", {})
    if which == "rest":
        return ("GET", "/files/" + draw(text).replace("?", "_").replace("#", "_"), {})
    if which == "query":
        return ("GET", "/query", {"params": {"q": draw(text), "tags": draw(st.lists(text, max_size=3))}})
    if which == "raw":
        return ("GET", "/raw", {"params": draw(st.dictionaries(text, text, max_size=3))})
    token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 -_.", min_size=1, max_size=10)
    return ("GET", "/headers", {"headers": {"x-token": draw(token).strip() or "t"}})


# derandomize: the same 60 examples every run, so that CI never fails on a draw no one can replay; a new
# difference is found by raising max_examples (or removing derandomize) locally, as this one found a path ending
# in a space.
@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(odd_requests(), min_size=1, max_size=5))
def test_generated_requests_get_the_same_answers_as_from_uvicorn(uvicorn_url, calls):
    ours = in_sandbox(calls)
    theirs = with_uvicorn(uvicorn_url, calls)
    assert ours == theirs, calls
