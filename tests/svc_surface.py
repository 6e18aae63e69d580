"""A FastAPI app over a broad surface of FastAPI and Starlette, for the differential HTTP tests
(tests/test_http_differential.py): the same app served by the sandbox, by FastAPI's TestClient and by a real uvicorn
on 127.0.0.1 must answer every request alike.

Every endpoint answers from its request alone (no clock, no random, no state), so the three servers can agree.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Body,
    Cookie,
    Depends,
    FastAPI,
    File,
    Form,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    StreamingResponse,
)
from pydantic import BaseModel, Field


class Color(str, Enum):
    red = "red"
    green = "green"


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    price: float = Field(ge=0)
    tags: list[str] = []


class Public(BaseModel):
    name: str


class Teapot(Exception):
    def __init__(self, why: str) -> None:
        self.why = why


def tenant(x_tenant: Annotated[str | None, Header()] = None) -> str:
    if x_tenant == "forbidden":
        raise HTTPException(403, "tenant refused", headers={"X-Reason": "tenant"})
    return x_tenant or "public"


def create_app():
    """The app served: FastAPI with middleware (below); paths under /bare go to an app with none, where an
    endpoint failing mid-body cuts the response short (behind BaseHTTPMiddleware the body is ended first)."""
    full, bare = create_full_app(), create_bare_app()

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/bare/"):
            await bare(scope, receive, send)
        else:
            await full(scope, receive, send)

    return app


async def counted_chunks(n: int):
    for i in range(n):
        yield f"chunk {i}\n".encode()


async def failing_export():
    yield b"first chunk\n"
    raise RuntimeError("the export failed midway")


async def half_response(scope, receive, send):
    """A raw ASGI app that starts a response and returns without finishing it."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"part", "more_body": True})


def create_bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/bare/stream-fails")
    async def stream_fails():
        return StreamingResponse(failing_export(), media_type="text/plain")

    @app.get("/bare/stream")
    async def stream():
        return StreamingResponse(counted_chunks(3), media_type="text/plain")

    app.mount("/bare/half", half_response)
    return app


def create_full_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(GZipMiddleware, minimum_size=200)
    app.add_middleware(
        CORSMiddleware, allow_origins=["http://shop.example"], allow_methods=["GET", "POST"], allow_headers=["x-tenant"]
    )

    @app.middleware("http")
    async def stamp(request: Request, call_next):
        if request.url.path == "/middleware/refuse":
            return JSONResponse({"refused": True}, status_code=429, headers={"Retry-After": "3"})
        response = await call_next(request)
        response.headers["X-Stamp"] = f"{request.method} {request.url.path}"
        return response

    @app.exception_handler(Teapot)
    async def teapot(request: Request, exc: Teapot):
        return JSONResponse({"teapot": exc.why}, status_code=418)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        if request.url.path.startswith("/strict"):
            return PlainTextResponse(f"invalid: {len(exc.errors())} error(s)", status_code=400)
        return JSONResponse({"detail": jsonable(exc.errors())}, status_code=422)

    # --- parameters of every kind ---------------------------------------------------

    @app.get("/path/{n}/{s}/{color}")
    async def path_params(n: int, s: str, color: Color):
        return {"n": n, "s": s, "color": color}

    @app.get("/floats/{x}")
    async def floats(x: Annotated[float, Path(gt=0)]):
        return {"x": x}

    @app.get("/files/{rest:path}")
    async def path_rest(rest: str):
        return {"rest": rest}

    @app.get("/query")
    async def query(
        q: str | None = None,
        n: Annotated[int, Query(ge=0, le=100)] = 1,
        flag: bool = False,
        tags: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
        alias_value: Annotated[str | None, Query(alias="item-id")] = None,
    ):
        return {"q": q, "n": n, "flag": flag, "tags": tags, "item_id": alias_value}

    @app.get("/headers")
    async def headers(
        user_agent: Annotated[str | None, Header()] = None,
        x_token: Annotated[list[str] | None, Header()] = None,
        accept_encoding: Annotated[str | None, Header()] = None,
    ):
        return {"user_agent": user_agent, "x_token": x_token, "accept_encoding": accept_encoding}

    @app.get("/cookies")
    async def cookies(session: Annotated[str | None, Cookie()] = None):
        return {"session": session}

    @app.get("/raw")
    async def raw(request: Request):
        return {
            "method": request.method,
            "path": request.url.path,
            "query": str(request.query_params),
            "path_params": request.path_params,
            "content_type": request.headers.get("content-type"),
        }

    # --- bodies ------------------------------------------------------------------------

    @app.post("/items", status_code=201)
    async def create_item(item: Item):
        return {"item": item.model_dump(), "total": round(item.price * max(1, len(item.tags)), 2)}

    @app.put("/items/{item_id}", response_model=Public)
    async def replace_item(item_id: int, item: Item, note: Annotated[str, Body()] = ""):
        return {"name": f"{item.name}#{item_id}{note}", "price": item.price}  # the model drops price

    @app.patch("/embed")
    async def embed(item: Annotated[Item, Body(embed=True)]):
        return {"embedded": item.name}

    @app.post("/raw-body")
    async def raw_body(request: Request):
        body = await request.body()
        return {"length": len(body), "start": body[:16].decode("latin-1")}

    @app.post("/form")
    async def form(name: Annotated[str, Form()], qty: Annotated[int, Form()] = 1):
        return {"name": name, "qty": qty}

    @app.post("/upload")
    async def upload(file: Annotated[UploadFile, File()], label: Annotated[str, Form()] = ""):
        content = await file.read()
        return {"filename": file.filename, "type": file.content_type, "size": len(content), "label": label}

    @app.post("/bytes")
    async def small_file(file: Annotated[bytes, File()]):
        return {"size": len(file)}

    # --- response classes and statuses --------------------------------------------------

    @app.get("/text", response_class=PlainTextResponse)
    async def text():
        return "plain text, ünïcode"

    @app.get("/html", response_class=HTMLResponse)
    async def html():
        return "<h1>hello</h1>"

    @app.get("/big")
    async def big():
        return {"data": "x" * 1000}  # over GZip's minimum size

    @app.get("/redirect")
    async def redirect():
        return RedirectResponse("/text", status_code=307)

    @app.get("/stream")
    async def stream(n: int = 3):
        return StreamingResponse(counted_chunks(n), media_type="text/plain")

    @app.get("/stream-fails")
    async def stream_fails():
        return StreamingResponse(failing_export(), media_type="text/plain")

    @app.get("/status/{code}")
    async def status(code: int, response: Response):
        response.status_code = code
        response.headers["X-Code"] = str(code)
        return {"code": code}

    @app.get("/set-cookies")
    async def set_cookies(response: Response):
        response.set_cookie("a", "1", httponly=True)
        response.set_cookie("b", "2", max_age=60)
        return {"set": 2}

    @app.delete("/items/{item_id}", status_code=204)
    async def delete_item(item_id: int):
        return Response(status_code=204)

    @app.get("/background")
    async def background(tasks: BackgroundTasks):
        tasks.add_task(lambda: None)
        return {"queued": True}

    # --- errors -----------------------------------------------------------------------------

    @app.get("/http-error/{code}")
    async def http_error(code: int):
        raise HTTPException(code, detail={"why": "asked for it"}, headers={"X-Error": "yes"})

    @app.get("/teapot")
    async def make_tea():
        raise Teapot("short and stout")

    @app.get("/crash")
    async def crash():
        raise ValueError("an unhandled error")

    @app.post("/strict/items")
    async def strict(item: Item):
        return {"ok": item.name}

    # --- routers, dependencies, mounted apps ------------------------------------------------

    router = APIRouter(prefix="/v1", dependencies=[Depends(tenant)], tags=["v1"])

    @router.get("/whoami")
    async def whoami(who: Annotated[str, Depends(tenant)]):
        return {"tenant": who}

    @router.api_route("/any", methods=["GET", "POST", "PUT"])
    async def any_method(request: Request):
        return {"method": request.method}

    app.include_router(router)

    sub = FastAPI()

    @sub.get("/hello/{name}")
    async def hello(name: str, request: Request):
        return {"hello": name, "root_path": request.scope.get("root_path"), "path": request.url.path}

    app.mount("/sub", sub)
    return app


def jsonable(errors: list) -> list:
    """Validation errors without their input objects' identities (ctx may hold exceptions)."""
    return [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in errors]
