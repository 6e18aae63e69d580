"""HTTP between simulated nodes: the client services use to call each other.

``HttpClient`` looks like ``httpx.AsyncClient`` (``get``, ``post``, ``put``,
``patch``, ``delete``, ``request``; ``json=``, ``content=``, ``data=``, ``files=``,
``headers=``, ``params=``, ``timeout=``) and returns a ``Response`` that looks like
``httpx.Response``. The request is the one httpx would send (its percent-encoding, its
default headers in its order, its bodies; a gzip or deflate response is decoded). The
host of the URL is a service name (``http://payments/charges``), resolved to one of
its replicas by a seeded load-balancing draw; a node name (``http://payments-1/``)
addresses one replica. The request crosses the simulated network, so it can be
delayed, lost, duplicated or cut off by a partition; if no response arrives within
``timeout`` seconds of virtual time the call raises ``sandbox.RequestTimeout``
(also an ``httpx.TimeoutException``). The request may have taken effect anyway.

In a service, get one through FastAPI's ``Depends``::

    @app.post("/orders")
    async def create_order(order: Order, http: sandbox.HttpClient = Depends(sandbox.http_client)):
        r = await http.post("http://payments/charges", json={"amount": order.total}, timeout=2.0)
        if r.status_code != 201: ...
"""

from __future__ import annotations

import json as _json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from . import _checks
from .errors import IncompleteResponse, InvalidParameterError, UnknownServiceError

if TYPE_CHECKING:
    from .nodes import Node

#: httpx's default timeout, in virtual seconds.
DEFAULT_TIMEOUT = 5.0

_UNSET: Any = object()


class Headers(dict):
    """Response headers: a dict with lower-cased names, read case-insensitively. A header sent more than once
    (``Set-Cookie``) reads as httpx reads it: ``headers[name]`` joins the values with ", ", and
    ``headers.get_list(name)`` gives each one; ``multi_items()`` gives every (name, value) in order."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        self._items: list[tuple[str, str]] = []
        for name, value in (items.items() if isinstance(items, Mapping) else items):
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Add one header line (after any of the same name)."""
        key = name.lower()
        self._items.append((key, value))
        dict.__setitem__(self, key, f"{dict.__getitem__(self, key)}, {value}" if dict.__contains__(self, key) else value)

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """The headers of raw ASGI ``(name, value)`` byte pairs, as a response carries them."""
        headers = cls.__new__(cls)
        items = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw]
        headers._items = items
        dict.update(headers, items)
        if len(headers) != len(items):  # a name sent more than once: its values joined, in order
            dict.clear(headers)
            for key, value in items:
                dict.__setitem__(headers, key, f"{dict.__getitem__(headers, key)}, {value}"
                                 if dict.__contains__(headers, key) else value)
        return headers

    def get_list(self, name: str) -> list[str]:
        """Every value of header ``name``, in the order they came."""
        key = name.lower()
        return [v for k, v in self._items if k == key]

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Response:
    """What came back from a service: ``status_code``, ``headers``, ``content``; ``json()``, ``text``."""

    __slots__ = ("status_code", "headers", "content", "url", "method", "elapsed")

    def __init__(self, status_code: int, headers: Headers, content: bytes, method: str, url: str, elapsed: float) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.method = method
        self.url = url
        self.elapsed = elapsed

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.content)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def raise_for_status(self) -> Response:
        """Return self if the status is 2xx, else raise ``httpx.HTTPStatusError``."""
        if not self.is_success:
            raise httpx.HTTPStatusError(
                f"{self.status_code} for {self.method} {self.url}: {self.text[:200]}",
                request=None,  # type: ignore[arg-type]
                response=self,  # type: ignore[arg-type]
            )
        return self

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}] {self.method} {self.url}>"


class HttpRequest:
    """An HTTP request as it crosses the simulated network."""

    __slots__ = ("method", "host", "path", "query_string", "headers", "body", "url")

    def __init__(self, method: str, host: str, path: str, query_string: bytes, headers: list, body: bytes, url: str) -> None:
        self.method = method
        self.host = host
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self.url = url


def split_url(url: str) -> tuple[str, str, str]:
    """``"http://payments/charges?x=1"`` -> ``("payments", "/charges", "x=1")``, percent-encoded as httpx sends
    it (``"/a b/é"`` -> ``"/a%20b/%C3%A9"``; dot segments resolved; a fragment dropped)."""
    split = _SPLIT.get(url) if type(url) is str else None
    if split is None:
        split = _split_url(url)
        if len(_SPLIT) >= _SPLIT_SIZE:
            _SPLIT.clear()
        _SPLIT[url] = split
    return split


#: ``split_url``'s answers for the URLs seen lately (a workload calls the same few URLs again and again).
_SPLIT: dict[str, tuple[str, str, str]] = {}
_SPLIT_SIZE = 4096


def _split_url(url: str) -> tuple[str, str, str]:
    if not isinstance(url, str) or not url.startswith("http://"):
        raise InvalidParameterError(
            f"url={url!r}: call another service as 'http://SERVICE/path', e.g. 'http://payments/charges'"
        )
    rest = url[7:]
    slash = rest.find("/")
    if slash < 0:
        host, target = rest, "/"
    else:
        host, target = rest[:slash], rest[slash:]
    host = host.split(":", 1)[0]
    if not _PLAIN_TARGET.fullmatch(target) or "/." in target.partition("?")[0]:
        # Anything httpx would change on the way out (spaces, non-ASCII, a stray %, a fragment, dot segments):
        # let httpx's own URL parser encode it, so the callee receives what it would from httpx.
        try:
            target = httpx.URL(url).raw_path.decode("ascii")
        except (httpx.InvalidURL, ValueError) as exc:
            raise InvalidParameterError(f"url={url!r} is not a valid URL ({exc})") from None
    path, _, query = target.partition("?")
    return host, path, query


#: A request target (path and query) that httpx sends unchanged: only characters it does not escape, and
#: well-formed percent escapes. Others take the slower, exact path through httpx.URL.
_PLAIN_TARGET = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")

#: The headers an ``httpx.AsyncClient`` sends with every request, in its order (``Host`` goes before them).
#: Accept-Encoding is what httpx sends without its optional decoders, on every machine, so that a world replays
#: the same wherever it runs.
DEFAULT_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
    (b"user-agent", f"python-httpx/{httpx.__version__}".encode()),
)

#: Methods for which httpx sends ``Content-Length: 0`` when there is no body.
_LENGTH_ALWAYS = frozenset({"POST", "PUT", "PATCH"})


#: ``json.dumps(..., ensure_ascii=False, separators=(",", ":"), allow_nan=False)``, made once.
_JSON_ENCODE = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _encode_json(json: Any) -> bytes:
    """The body httpx sends for ``json=``: compact, UTF-8, no NaN or infinity."""
    try:
        return _JSON_ENCODE(json).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"json={json!r} is not JSON-serialisable ({exc}); send plain dicts, lists, str, finite "
            f"numbers (for a pydantic model use model.model_dump(mode='json'))"
        ) from None


def build_request(
    method: str,
    url: str,
    *,
    json: Any = _UNSET,
    content: bytes | str | None = None,
    data: Mapping[str, Any] | None = None,
    files: Any = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    params: Any = None,
    boundary: Callable[[], str] | None = None,
) -> HttpRequest:
    """The request httpx would send: its target encoding, its default headers and their order, its bodies.

    ``params`` replaces the URL's query, as in httpx. ``data=`` sends a form (``files=`` too: multipart, whose
    boundary comes from ``boundary()``, so that it is drawn from the world's seeded streams).
    """
    method = method.upper()
    host, path, query = split_url(url)
    if headers is None and params is None and content is None and data is None and files is None:
        # The common call (a JSON body or none): the same request as below, built directly.
        if json is _UNSET or json is None:
            raw_headers = [(b"host", host.encode("latin-1"))]
            if method in _LENGTH_ALWAYS:
                raw_headers.append((b"content-length", b"0"))
            raw_headers.extend(DEFAULT_HEADERS)
            return HttpRequest(method, host, path, query.encode("latin-1"), raw_headers, b"", url)
        body = _encode_json(json)
        return HttpRequest(method, host, path, query.encode("latin-1"), [
            (b"host", host.encode("latin-1")), *DEFAULT_HEADERS, (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ], body, url)
    if params is not None:
        query = str(httpx.QueryParams(params))
    user: list[tuple[bytes, bytes]] = []
    if headers:
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            try:
                user.append((str(name).lower().encode("ascii"), str(value).encode("latin-1")))
            except UnicodeEncodeError:
                raise InvalidParameterError(
                    f"header {name!r}: {value!r} cannot be sent: header names are ASCII and values Latin-1 on the "
                    f"wire; percent-encode the value (urllib.parse.quote) or send it in the body"
                ) from None
    given = {name for name, _ in user}
    if json is _UNSET:
        json = None  # as in httpx, json=None sends no body
    if sum(x is not None for x in (content, json)) + bool(data) > 1:
        raise InvalidParameterError("pass one of json=, content= or data= (with files=, a form), not several")
    body_headers: list[tuple[bytes, bytes]] = []
    if json is not None:
        body = _encode_json(json)
        body_headers.append((b"content-type", b"application/json"))
    elif data or files:
        if files is not None and b"content-type" not in given:
            mark = boundary() if boundary is not None else "chaos-dojo-boundary"
            body_headers.append((b"content-type", f"multipart/form-data; boundary={mark}".encode("ascii")))
        try:
            encoded = httpx.Request(method, "http://h/", data=data, files=files,
                                    headers=[(k, v) for k, v in user + body_headers if k == b"content-type"])
            body = encoded.read()
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(
                f"data={data!r}, files={files!r}: not a form httpx can send ({exc}); data is a dict of str values, "
                f"files a dict of name: bytes or (filename, bytes, content_type)"
            ) from None
        if not body_headers:
            body_headers.append((b"content-type", encoded.headers["content-type"].encode("latin-1")))
    elif content is None:
        body = b""
    elif isinstance(content, str):
        body = content.encode("utf-8")
    elif isinstance(content, (bytes, bytearray, memoryview)):
        body = bytes(content)
    else:
        raise InvalidParameterError(
            f"content={content!r}: pass bytes or str (for JSON use json=, for a form data=)"
        )
    raw_headers: list[tuple[bytes, bytes]] = [(b"host", host.encode("latin-1"))]
    if not body and method in _LENGTH_ALWAYS and b"content-length" not in given and b"transfer-encoding" not in given:
        raw_headers.append((b"content-length", b"0"))
    raw_headers.extend(h for h in DEFAULT_HEADERS if h[0] not in given)
    raw_headers.extend(user)
    if body and b"content-length" not in given:
        raw_headers.append((b"content-length", str(len(body)).encode()))
    raw_headers.extend(h for h in body_headers if h[0] not in given)
    return HttpRequest(method, host, path, query.encode("latin-1"), raw_headers, body, url)


def decode_content(encoding: str, body: bytes) -> bytes:
    """The body as httpx's ``response.content`` gives it, decoded by httpx itself (gzip, deflate; a stream cut
    short decodes as far as it goes, as httpx reads it).

    Raises:
        httpx.DecodingError: the body is not what its Content-Encoding says, as httpx raises it.
    """
    return httpx.Response(200, headers=[("content-encoding", encoding)], content=body).content


def check_timeout(timeout: Any) -> float | None:
    """Return ``timeout`` as seconds if it is a usable timeout (a finite number > 0, or None)."""
    return _checks.timeout("timeout", timeout)


class _Methods:
    """The httpx-style verbs, shared by the sandbox and the local client."""

    async def request(self, method: str, url: str, **kwargs: Any) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    async def get(self, url: str, **kwargs: Any) -> Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> Response:
        return await self.request("DELETE", url, **kwargs)


class HttpClient(_Methods):
    """Calls other services over the simulated network from one node (see the module docstring)."""

    def __init__(self, node: Node) -> None:
        self._node = node

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = _UNSET,
        content: bytes | str | None = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Response:
        """Send one request and wait (in virtual time) for its response.

        Raises:
            RequestTimeout: no response within ``timeout`` virtual seconds.
            UnknownServiceError: the URL's host is no service or node of this world.
        """
        node = self._node
        if not node.alive:
            node.check_alive()
        if timeout is not DEFAULT_TIMEOUT and not (type(timeout) is float and 0.0 < timeout < math.inf):
            timeout = check_timeout(timeout)
        world = node.world
        request = build_request(
            method, url, json=json, content=content, data=data, files=files, headers=headers, params=params,
            boundary=self._boundary,
        )
        target = world._route(request.host, node)
        tracing = world.tracing
        env = world.env
        started = env.now
        if tracing is None:
            status, raw_headers, body = await node.call(
                target, target.handle_http, request, "http", timeout, f"{request.method} {url}"
            )
            if body is None:
                raise _cut_short(request, url, status)
        else:
            span = tracing.client_span(node, request)
            try:
                status, raw_headers, body = await node.call(
                    target, target.handle_http, request, "http", timeout, f"{request.method} {url}"
                )
            except BaseException as exc:
                tracing.end_client_span(span, None, exc)
                raise
            if body is None:  # the server started the response and cut it short
                error = _cut_short(request, url, status)
                tracing.end_client_span(span, status, error)
                raise error
            tracing.end_client_span(span, status, None)
        hdrs = Headers.from_raw(raw_headers)
        if dict.__contains__(hdrs, "content-encoding"):
            body = decode_content(dict.__getitem__(hdrs, "content-encoding"), body)
        return Response(status, hdrs, body, request.method, url, env.now - started)

    def _boundary(self) -> str:
        """A multipart boundary, drawn from the node's seeded stream."""
        node = self._node
        return format(node.world.streams[f"multipart/{node.name}"].getrandbits(128), "032x")


def _cut_short(request: HttpRequest, url: str, status: int) -> IncompleteResponse:
    return IncompleteResponse(
        f"{request.method} {url}: the server closed the connection before the response was complete "
        f"(status {status}; its endpoint failed while sending the body); the request's effects may have "
        f"happened, in part"
    )


class LocalHttpClient(_Methods):
    """The HTTP client outside a world (FastAPI's TestClient): calls apps in-process.

    Other services are found in ``app.state.chaos_dojo_services``, filled by
    ``sandbox.connect_local(app, payments=payments_app)``; the call goes through
    httpx's ASGI transport, so it is a real request to a real app.
    """

    def __init__(self, services: Mapping[str, Any]) -> None:
        self._services = services

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = _UNSET,
        content: bytes | str | None = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Response:
        check_timeout(timeout)
        request = build_request(
            method, url, json=json, content=content, data=data, files=files, headers=headers, params=params,
            boundary=lambda: os.urandom(16).hex(),
        )
        app = self._services.get(request.host)
        if app is None:
            known = sorted(self._services)
            raise UnknownServiceError(
                f"no local app for host {request.host!r} (known: {known}); outside a sandbox World, "
                f"connect the apps first: sandbox.connect_local(app, {request.host}=other_app)"
            )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{request.host}") as client:
            r = await client.request(
                request.method,
                request.path + (f"?{request.query_string.decode()}" if request.query_string else ""),
                content=request.body,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers if k not in (b"content-length", b"host")],
            )
        hdrs = Headers(r.headers.multi_items())
        return Response(r.status_code, hdrs, r.content, request.method, url, 0.0)


def connect_local(app: Any, **services: Any) -> None:
    """Let ``app``'s HTTP client reach other apps by name when run outside a World.

    For FastAPI's TestClient: ``sandbox.connect_local(orders_app, payments=payments_app)``
    makes ``http.post("http://payments/charges")`` in the orders app call the
    payments app in-process.
    """
    registry = getattr(app.state, "chaos_dojo_services", None)
    if registry is None:
        registry = {}
        app.state.chaos_dojo_services = registry
    registry.update(services)

