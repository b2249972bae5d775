"""``llmrec serve``: a FastAPI service over one run artefact.

Endpoints: ``POST /recommend`` (a user id and/or a history of item ids, ``k``, items to ``exclude``,
``exclude_history``), ``GET /items/{item_id}``, ``GET /health``, ``GET /metrics`` (Prometheus text: request
counts by route/method/status, a latency histogram per route, the batch sizes of the batcher), and the OpenAPI
schema at ``/openapi.json`` (docs at ``/docs``).

Every bad request is a 4xx whose JSON body names the field: 422 for schema violations (wrong types, ``k`` out
of range, a history longer than ``max_history``, unknown keys), 404 for an unknown user or item, 413 for a body
over ``max_body_bytes``. Anything unexpected is a 500 with a one-line message — never a stack trace.
"""


import asyncio
import logging
import re
import time
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi import Path as FPath
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

from llmrec.models.base import UnsupportedOperation
from llmrec.service.engine import (
    EmptyHistory,
    Query,
    UnknownItem,
    UnknownUser,
    answer,
    recommend_resolved,
    resolve,
)

log = logging.getLogger("llmrec.service")


class ServeSettings(BaseModel):
    """Limits and batching of the service (``llmrec serve`` options)."""

    model_config = ConfigDict(extra="forbid")
    max_k: int = Field(1000, ge=1, description="largest k a request may ask for (also capped at the catalogue size)")
    max_history: int = Field(1000, ge=1, description="most item ids in a request's history")
    max_exclude: int = Field(1000, ge=0, description="most item ids in a request's exclude list")
    max_id_length: int = Field(256, ge=1, description="longest user / item id string")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="largest request body")
    batching: bool = Field(True, description="answer concurrent requests with one model call")
    max_batch: int = Field(32, ge=1)
    max_wait_ms: float = Field(0.0, ge=0, le=1000, description="how long a batch waits for more requests; 0 = take "
                               "what queued during the previous model call (measured best: BENCHMARKS.md)")


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    message: str
    detail: list[ErrorItem]


class ErrorBody(BaseModel):
    detail: str


class RecItem(BaseModel):
    rank: int
    item_id: str
    title: str | None
    score: float
    index: int = Field(description="the model's internal item index")


class RecommendResponse(BaseModel):
    user: str | None
    known_user: bool
    history_length: int = Field(description="items the model read (known history + the request's known items)")
    k: int
    exclude_history: bool
    unknown_items: list[str] = Field(description="history item ids not in the catalogue (not used for scoring)")
    unknown_exclude: list[str]
    items: list[RecItem]


class Health(BaseModel):
    status: str
    model: str
    dataset: str | None
    protocol: str | None
    n_users: int
    n_items: int
    data_fingerprint: str | None
    batching: bool


def _integral(v):
    """JSON Schema's integer: 14 and 14.0, not 14.5, "14" or true."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _request_model(art, s: ServeSettings):
    # an id is a string, or an integer (numeric ids sent as JSON numbers; documented in the schema as such)
    Id = Annotated[Annotated[str, StringConstraints(min_length=1, max_length=s.max_id_length)]
                   | Annotated[StrictInt, BeforeValidator(_integral)], AfterValidator(str)]
    ex_items = art.item_ids[:3]
    max_k = max(1, min(s.max_k, art.n_items))
    default_k = min(10, max_k)

    class RecommendRequest(BaseModel):
        """A known user (``user``), a history of item ids (``history``, oldest first), or both (the history is
        appended to the user's known sequence)."""

        model_config = ConfigDict(extra="forbid", json_schema_extra={
            "anyOf": [
                {"required": ["user"], "properties": {"user": {"type": ["string", "integer"]}}},
                {"required": ["history"], "properties": {"history": {"type": "array"}}},
            ],
            "examples": [{"user": art.user_ids[0], "k": default_k} if art.n_users else {"history": ex_items},
                         {"history": ex_items, "k": default_k, "exclude": ex_items[:1]}],
        })
        user: Id | None = Field(None, description="original user id seen in training")
        history: list[Id] | None = Field(None, min_length=1, max_length=s.max_history, description="original item ids, oldest first")
        k: Annotated[StrictInt, BeforeValidator(_integral)] = Field(default_k, ge=1, le=max_k, description="number of items to return")
        exclude: list[Id] = Field(default_factory=list, max_length=s.max_exclude, description="item ids never to return")
        exclude_history: StrictBool = Field(True, description="leave items of the history out of the answer")

        @model_validator(mode="after")
        def _user_or_history(self):
            if self.user is None and self.history is None:
                raise ValueError("give 'user' (a known user id) or 'history' (item ids), or both")
            return self

    return RecommendRequest


class _BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413 before they reach the app (Content-Length or streamed)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        if cl is not None and cl.isdigit() and int(cl) > self.limit:
            return await self._reject(scope, send, int(cl))
        body, more = b"", True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.limit:
                return await self._reject(scope, send, len(body))
        done = False

        async def replay():
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope, send, n: int):
        resp = JSONResponse({"detail": f"request body is {n} bytes; the limit is {self.limit} (max_body_bytes)"},
                            status_code=413)
        await resp(scope, None, send)


_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


class _Metrics:
    """Prometheus request counter and latency histogram, labelled by route template (not raw path)."""

    def __init__(self, app, registry, counter, latency):
        self.app, self.counter, self.latency = app, counter, latency

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}
        t = time.perf_counter()

        async def send_wrap(msg):
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_wrap)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"  # bounded label values
            self.counter.labels(path, method, str(status["code"])).inc()
            self.latency.labels(path).observe(time.perf_counter() - t)


def _field(loc) -> str:
    """``body.history.3`` from a pydantic location, without union-branch tags such as ``constrained-str``."""
    return ".".join(str(x) for x in loc if isinstance(x, int) or re.fullmatch(r"\w+", str(x))) or "body"


def create_app(art, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app over a loaded :class:`~llmrec.pipelines.artifact.Artifact`."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
    )

    s = settings or ServeSettings()
    Req = _request_model(art, s)
    reg = CollectorRegistry()
    counter = Counter("llmrec_requests", "HTTP requests", ["route", "method", "status"], registry=reg)
    latency = Histogram("llmrec_request_seconds", "request latency (seconds)", ["route"], registry=reg,
                        buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
    batch_sizes = Histogram("llmrec_batch_size", "requests answered by one model call", registry=reg,
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128))
    state: dict = {"batcher": None}

    @asynccontextmanager
    async def lifespan(app):
        if art.n_users:  # warm up (lazy indexes, allocations) on a known user
            try:
                recommend_resolved(art, [resolve(art, Query(user=art.user_ids[0], k=1))])
            except UnsupportedOperation as e:  # the service still serves /items, /health; /recommend answers 501
                log.warning("this model cannot recommend from the whole catalogue: %s", e)
        if s.batching:
            from llmrec.service.batcher import Batcher

            state["batcher"] = Batcher(art, s.max_batch, s.max_wait_ms, on_batch=batch_sizes.observe)
        try:
            yield
        finally:
            if state["batcher"] is not None:
                state["batcher"].close()

    model_name = getattr(art.model, "name", "?")
    app = FastAPI(title="llmrec", version="1", lifespan=lifespan,
                  description=f"Recommendations from {model_name} trained on {art.meta.get('dataset')} "
                              f"({art.n_users:,} users, {art.n_items:,} items).")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errs = [{"loc": [x if isinstance(x, int) else str(x) for x in e.get("loc", ())],
                 "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
        by_field: dict[str, list[str]] = {}  # one line per field; a union's branches joined with "or"
        for e in errs:
            msgs = by_field.setdefault(_field(e["loc"]), [])
            if e["msg"] not in msgs:
                msgs.append(e["msg"])
        msg = "; ".join(f"{f}: {' or '.join(m)}" for f, m in by_field.items()) or "invalid request"
        return JSONResponse({"message": msg, "detail": errs}, status_code=422)

    @app.exception_handler(EmptyHistory)
    @app.exception_handler(UnknownUser)
    @app.exception_handler(UnknownItem)
    async def _unknown(request: Request, exc: LookupError):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(UnsupportedOperation)
    async def _unsupported(request: Request, exc: UnsupportedOperation):
        return JSONResponse({"detail": str(exc)}, status_code=501)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("error answering %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    err = {400: {"model": ErrorBody, "description": "the body is not readable (e.g. not UTF-8)"},
           404: {"model": ErrorBody, "description": "unknown user, or no history item is in the catalogue"},
           413: {"model": ErrorBody, "description": "request body too large"},
           422: {"model": ValidationErrorBody, "description": "invalid request (the message names the field)"}}

    @app.post("/recommend", response_model=RecommendResponse, responses=err)
    async def recommend(req: Req):  # type: ignore[valid-type]
        row = resolve(art, Query(user=req.user, history=req.history, k=req.k, exclude=list(req.exclude),
                                 exclude_history=req.exclude_history))
        if state["batcher"] is not None:
            recs = await asyncio.wrap_future(state["batcher"].submit(row))
        else:
            recs = (await run_in_threadpool(recommend_resolved, art, [row]))[0]
        return answer(art, row, recs)

    @app.get("/items/{item_id}", responses={404: {"model": ErrorBody, "description": "unknown item"}})
    async def item(item_id: Annotated[str, StringConstraints(max_length=s.max_id_length),
                                      FPath(examples=art.item_ids[:1])]) -> dict:
        i = art.item_index.get(item_id)
        if i is None:
            raise UnknownItem(item_id)
        return art.item_row(i)

    @app.get("/health", response_model=Health)
    async def health():
        fp = art.fingerprint or {}
        return Health(status="ok", model=model_name, dataset=art.meta.get("dataset"), protocol=art.meta.get("protocol"),
                      n_users=art.n_users, n_items=art.n_items, data_fingerprint=fp.get("hash"),
                      batching=state["batcher"] is not None)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(generate_latest(reg).decode(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_BodyLimit, limit=s.max_body_bytes)
    app.add_middleware(_Metrics, registry=reg, counter=counter, latency=latency)
    return app
