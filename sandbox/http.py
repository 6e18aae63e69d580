"""HTTP between simulated nodes: the client services use to call each other.

``HttpClient`` looks like ``httpx.AsyncClient`` (``get``, ``post``, ``put``,
``patch``, ``delete``, ``request``; ``json=``, ``headers=``, ``params=``,
``timeout=``) and returns a ``Response`` that looks like ``httpx.Response``. The
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
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from . import _checks
from .errors import InvalidParameterError, UnknownServiceError

if TYPE_CHECKING:
    from .nodes import Node

#: httpx's default timeout, in virtual seconds.
DEFAULT_TIMEOUT = 5.0

_UNSET: Any = object()
_COMPACT_JSON = _json.JSONEncoder(separators=(",", ":")).encode


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
    """``"http://payments/charges?x=1"`` -> ``("payments", "/charges", "x=1")``."""
    if not isinstance(url, str) or not url.startswith("http://"):
        raise InvalidParameterError(
            f"url={url!r}: call another service as 'http://SERVICE/path', e.g. 'http://payments/charges'"
        )
    rest = url[7:]
    slash = rest.find("/")
    if slash < 0:
        host, path = rest, "/"
    else:
        host, path = rest[:slash], rest[slash:]
    host = host.split(":", 1)[0]
    path, _, query = path.partition("?")
    return host, path, query


def build_request(
    method: str,
    url: str,
    *,
    json: Any = _UNSET,
    content: bytes | str | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    params: Mapping[str, Any] | None = None,
) -> HttpRequest:
    host, path, query = split_url(url)
    if params:
        extra = urlencode(params, doseq=True)
        query = f"{query}&{extra}" if query else extra
    raw_headers: list[tuple[bytes, bytes]] = []
    if headers:
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            raw_headers.append((str(name).lower().encode("latin-1"), str(value).encode("latin-1")))
    if json is not _UNSET:
        if content is not None:
            raise InvalidParameterError("pass either json= or content=, not both")
        try:
            body = _COMPACT_JSON(json).encode()
        except TypeError as exc:
            raise InvalidParameterError(
                f"json={json!r} is not JSON-serialisable ({exc}); send plain dicts, lists, str, "
                f"numbers (for a pydantic model use model.model_dump(mode='json'))"
            ) from None
        raw_headers.append((b"content-type", b"application/json"))
    elif content is None:
        body = b""
    else:
        body = content.encode() if isinstance(content, str) else bytes(content)
    raw_headers.append((b"content-length", str(len(body)).encode()))
    raw_headers.append((b"host", host.encode("latin-1")))
    return HttpRequest(method.upper(), host, path, query.encode("latin-1"), raw_headers, body, url)


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
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Response:
        """Send one request and wait (in virtual time) for its response.

        Raises:
            RequestTimeout: no response within ``timeout`` virtual seconds.
            UnknownServiceError: the URL's host is no service or node of this world.
        """
        node = self._node
        node.check_alive()
        timeout = check_timeout(timeout)
        request = build_request(method, url, json=json, content=content, headers=headers, params=params)
        world = node.world
        target = world._route(request.host, node)
        tracing = world.tracing
        span = tracing.client_span(node, request) if tracing is not None else None
        started = world.env.now
        try:
            status, raw_headers, body = await node.call(
                target, target.handle_http, request, "http", timeout, f"{request.method} {url}"
            )
        except BaseException as exc:
            if span is not None:
                tracing.end_client_span(span, None, exc)
            raise
        if span is not None:
            tracing.end_client_span(span, status, None)
        hdrs = Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw_headers)
        return Response(status, hdrs, body, request.method, url, world.env.now - started)


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
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Response:
        check_timeout(timeout)
        request = build_request(method, url, json=json, content=content, headers=headers, params=params)
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
                headers=[(k.decode(), v.decode()) for k, v in request.headers if k not in (b"content-length", b"host")],
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

