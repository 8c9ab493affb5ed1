"""The HTTP edge every service shares: the FastAPI app, its lifespan, health, idempotency.

`create_api` builds a service's FastAPI app around its `Runtime` (the
application, relay, consumers and projector wired by `main.py`) and runs them
for as long as the app runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import json
import logging
import re
import urllib.parse
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from opentelemetry import propagate
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import problems
from shared.api import CONTROL_OR_LINE, MOMENT_PATTERN, PLAIN_LINE, with_pattern
from shared.auth import Principal, Role, TokenVerifier, principal, requires
from shared.consumer import Consumer
from shared.projections import Projector
from shared.relay import Relay
from shared.settings import Settings
from shared.store import CommandContext, ServiceApplication, _context, _idempotency, _Idempotency
from shared.telemetry import without_query_in_span

log = logging.getLogger(__name__)


class Worker(Protocol):
    """Any other background job reading Kafka (e.g. partners' feeds), run and reported like the
    consumers in /readyz and /metrics."""

    name: str
    running: bool  # connected and working
    processed: int  # records read and done with, since start
    published: int  # records written, since start
    lag_by_partition: dict[str, int]  # "topic:partition" -> records not read yet

    async def run(self, stop: asyncio.Event) -> None: ...


@dataclass
class Runtime:
    """Everything a service runs, wired once in its `main.py`."""

    settings: Settings
    app: ServiceApplication | None  # None: a service without a store of its own (audit)
    relay: Relay | None = None
    consumers: list[Consumer] = field(default_factory=list)
    projector: Projector | None = None
    # Extra periodic jobs: (seconds, blocking function run in a thread).
    periodic: list[tuple[float, Callable[[], Any]]] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    stop: asyncio.Event | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # Commands answered, by (route, status code): the commands/s of /metrics.
    commands: Counter[tuple[str, int]] = field(default_factory=Counter)

    async def start(self) -> None:
        """Start the background work, unless this process only serves HTTP (role "api").

        Role "all" (the default, `make run`): one process does everything. In production a
        service runs any number of "api" processes and one "worker" (relay, consumers,
        projector), so that HTTP requests do not share a process and its GIL with them.
        """
        self.stop = asyncio.Event()
        if self.settings.role == "api":
            return
        if self.projector:
            await asyncio.to_thread(self.projector.catch_up)
            self.projector.start()
            if self.relay:
                # Saves made by other processes wake the projector through the relay's NOTIFY listener.
                self.relay.on_notify(self.projector.wake)
        if self.relay:
            self.tasks.append(asyncio.create_task(self.relay.run(self.stop), name="relay"))
        for consumer in self.consumers:
            self.tasks.append(asyncio.create_task(consumer.run(self.stop), name=f"consumer {consumer.topics}"))
        for worker in self.workers:
            self.tasks.append(asyncio.create_task(worker.run(self.stop), name=worker.name))
        for seconds, job in self.periodic:
            self.tasks.append(asyncio.create_task(self._every(seconds, job), name=f"every {seconds}s"))

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        assert self.stop is not None
        while not self.stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), seconds)
            if self.stop.is_set():
                return
            try:
                await asyncio.to_thread(job)
            except Exception:
                log.exception("periodic job failed")

    async def close(self) -> None:
        if self.stop:
            self.stop.set()
        for task in self.tasks:
            try:
                await asyncio.wait_for(task, 15)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                log.exception("task %s ended with an error", task.get_name())
        if self.projector:
            self.projector.stop()
        if self.app is not None:
            self.app.close()


class BodyLimit:
    """Refuse request bodies larger than `max_bytes` with 413, before anything reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen = 0
        too_large = answered = False

        async def limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def unless_too_large(message: Message) -> None:
            # The app may catch the error of a body it could not read whole (FastAPI answers
            # 400 "error parsing the body"): that answer is dropped, the 413 below is sent.
            nonlocal answered
            if not too_large:
                answered = True
                await send(message)

        try:
            await self.app(scope, limited, unless_too_large)
        except _TooLarge:
            pass
        if too_large and not answered:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem(413, f"the body must not exceed {self.max_bytes} bytes")
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class AnswerUnexpected:
    """An unexpected error is answered here, 500 problem+json, and goes no further.

    Starlette's outermost middleware answers it too, but raises it again for the server to
    log, and uvicorn then closes the connection: the client's next request on that kept-alive
    connection was reset.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # half an answer is out: only closing the connection can tell the client
                raise
            await problems.internal_error()(scope, receive, send)


class PlainRequestLine:
    """Refuse, 422, a path or query string holding a control character (`%00` and the like),
    or bytes that are not UTF-8, before any route reads it (a NUL reaching PostgreSQL is an error)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_path = scope.get("raw_path")
            path = raw_path.decode("latin-1") if raw_path else scope.get("path", "")
            for part, text in (("path", path), ("query", scope.get("query_string", b"").decode("latin-1"))):
                if CONTROL_OR_LINE.search(urllib.parse.unquote_plus(text, errors="surrogateescape")):
                    response = problems.problem(
                        422, f"the {part} must not hold control characters (NUL and the like) "
                             "and must be UTF-8", errors=[{"loc": [part], "msg": "control character",
                                                            "type": "value_error"}])
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


# --- commands: who acts, and Idempotency-Key -----------------------------------

async def command_context(request: Request, who: Annotated[Principal, Depends(principal)]) -> CommandContext:
    """Sets who is acting (and the trace) for the events the request will save."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 200:  # refused by the replay; a DELETE ignores it
        key = None
    context = CommandContext(actor=who.actor, partner_id=who.partner_id if who.has(Role.partner) else None,
                             causation_id=f"request:{key or request_id(request)}",
                             traceparent=carrier.get("traceparent"))
    _context.set(context)  # the sync endpoint runs in a thread with a copy of this context
    return context


def request_id(request: Request) -> str:
    """The caller's `X-Request-Id` when it is 1 to 200 visible ASCII characters, else a new one."""
    given = request.headers.get("x-request-id", "")
    return given if REQUEST_ID.fullmatch(given) else str(uuid.uuid4())


REQUEST_ID = re.compile(r"[\x21-\x7e]{1,200}")


def idempotency_scope(who: Principal, method: str, route: str, key: str) -> str:
    """The stored key: one caller's key on one route, so that no two callers' keys can meet.

    A hash of a JSON array, so that no character of a subject (a `:`) can make two scopes equal.
    """
    return hashlib.sha256(json.dumps([who.issuer, who.sub, method, route, key]).encode()).hexdigest()


IDEMPOTENCY_KEY = ("the same key again, from the same caller on the same route, replays the first answer "
                   "and writes nothing (another body with it: 422)")


def replay_if_answered(route: str) -> Callable[..., Any]:
    """The dependency that answers a request already answered again from the store (`Replayed`).

    `CommandRoute` makes it the last dependency of its route, so that a stored answer is sent
    again only to a caller who passed the route's role and partner-scope checks. The same key
    with another body is 422.
    """

    async def replay(request: Request, who: Annotated[Principal, Depends(principal)],
                     key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200,
                                                       description=IDEMPOTENCY_KEY)] = None) -> None:
        if key is None or request.method != "POST":
            return
        body = await request.body()
        fingerprint = hashlib.sha256(
            request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
        ).hexdigest()
        scoped = idempotency_scope(who, request.method, route, key)
        app: ServiceApplication = request.app.state.runtime.app
        found = await run_in_threadpool(app.find_idempotency, scoped)
        if found is not None:
            stored_fingerprint, aggregate_id, response = found
            if stored_fingerprint != fingerprint:
                raise problems.HTTPException(422, "this Idempotency-Key was already used for another request")
            if response is not None:
                stored = json.loads(response)
                raise problems.Replayed(stored["status"], stored["body"])
            raise problems.Replayed(200, {"id": aggregate_id})
        state = _Idempotency(scoped, fingerprint)
        _idempotency.set(state)
        request.state.idempotency = state

    return replay


def _with_replay_last(endpoint: Callable[..., Any], route: str) -> Callable[..., Any]:
    """`endpoint` with one more parameter, last: the `replay_if_answered` dependency.

    FastAPI solves an endpoint's dependencies in the order of its parameters, after the
    router's own dependencies (`command_context`): the replay comes after the role check
    (`requires(...)`) and any partner-scope dependency the endpoint declares.
    """
    try:
        signature = inspect.signature(endpoint, eval_str=True)  # the annotations, resolved in its module
    except NameError:
        signature = inspect.signature(endpoint)
    replay = inspect.Parameter("_replayed", inspect.Parameter.KEYWORD_ONLY,
                               annotation=Annotated[None, Depends(replay_if_answered(route))])
    if inspect.iscoroutinefunction(endpoint):
        async def wrapper(*args: Any, _replayed: None = None, **kwargs: Any) -> Any:
            return await endpoint(*args, **kwargs)
    else:
        def wrapper(*args: Any, _replayed: None = None, **kwargs: Any) -> Any:  # type: ignore[misc]
            return endpoint(*args, **kwargs)
    functools.update_wrapper(wrapper, endpoint)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), replay])  # type: ignore[attr-defined]
    wrapper.replays_last = True  # type: ignore[attr-defined]
    return wrapper


class CommandRoute(APIRoute):
    """Replays a command already answered for its Idempotency-Key, after the route's own checks,
    and stores the answer of a new one for its replays."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # Only a POST is replayed (a DELETE is idempotent by itself); a route made again from
        # a route's endpoint already replays.
        if "POST" in (kwargs.get("methods") or ()) and not getattr(endpoint, "replays_last", False):
            endpoint = _with_replay_last(endpoint, path)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            response = await handler(request)
            request.app.state.runtime.commands[(self.path, response.status_code)] += 1
            state: _Idempotency | None = getattr(request.state, "idempotency", None)
            if state is not None and state.recorded and 200 <= response.status_code < 300:
                body = json.loads(response.body) if response.body else None
                app: ServiceApplication = request.app.state.runtime.app
                await run_in_threadpool(app.complete_idempotency, state.key,
                                        {"status": response.status_code, "body": body})
            return response

        return handle


def command_router(**kwargs: Any) -> APIRouter:
    """A router whose routes act as the caller (audit metadata) and honour Idempotency-Key."""
    return APIRouter(route_class=CommandRoute, dependencies=[Depends(command_context)], **kwargs)


def operations_router() -> APIRouter:
    """Parked records (the dead-letter side of the consumers) and projection rebuilds, for admins."""
    # Role and requires are imported at module level: the routes' annotations are strings
    # (postponed evaluation) that FastAPI resolves in this module's globals.
    router = APIRouter(prefix="/v1/admin", tags=["operations"])

    @router.get("/parked")
    def parked(request: Request, _: Annotated[Principal, Depends(requires(Role.admin))]) -> list[dict[str, Any]]:
        """Records a consumer could not process, waiting for a retry."""
        app: ServiceApplication = request.app.state.runtime.app
        return [
            {"topic": r.topic, "partition": r.partition, "offset": r.offset, "key": r.key, "error": r.error}
            for r in app.parked_records()
        ]

    @router.post("/parked/retry")
    async def retry(request: Request, _: Annotated[Principal, Depends(requires(Role.admin))]) -> dict[str, int]:
        """Process the parked records again, in order within each aggregate."""
        totals = {"retried": 0, "still_parked": 0}
        for consumer in request.app.state.runtime.consumers:
            for k, v in (await consumer.retry_parked()).items():
                totals[k] += v
        return totals

    @router.post("/projections/{name}/rebuild")
    async def rebuild(name: str, request: Request, _: Annotated[Principal, Depends(requires(Role.admin))]) -> dict[str, Any]:
        """Drop a read model and replay the whole log into it."""
        projector: Projector | None = request.app.state.runtime.projector
        if projector is None or name not in projector.projections:
            raise problems.HTTPException(404, f"no projection named {name}")
        applied = await asyncio.to_thread(projector.rebuild, name)
        return {"projection": name, "events_applied": applied}

    return router


# --- the contract: every route's error answers -----------------------------------

def declare_problems(route: Any) -> None:
    """Declares in the OpenAPI the problem+json answers a route can give, from what it depends on.

    Every route: 422 (a control character in its path or query is refused before it is reached)
    and 500. With a principal: 401, 403 and 503 (the identity provider out of reach, or the
    store). With a path parameter or a required query parameter naming a thing, and every
    command: 404. Commands: 409 (a rule broken, a concurrent change), 413 and 503 (the store).
    With a body: 413. A route's own `responses` win.
    """
    if not isinstance(route, APIRoute):
        return
    statuses = {422, 500}
    calls, stack = set(), list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        calls.add(dependant.call)
        stack += dependant.dependencies
    if principal in calls:
        statuses |= {401, 403, 503}
    if route.dependant.path_params or any(q.field_info.is_required() for q in route.dependant.query_params):
        statuses.add(404)
    if isinstance(route, CommandRoute):
        statuses |= {404, 409, 413, 503}
    if route.body_field is not None or route.methods & {"POST", "PUT", "PATCH"}:
        statuses.add(413)
    route.responses = {**problems.answers(*sorted(statuses)), **route.responses}


def with_problem_schema(api: FastAPI) -> None:
    """Adds to the app's OpenAPI document the `Problem` schema the declared answers refer to, and
    to its free string parameters the pattern that says no control character."""
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = generate()
            schema = problems.Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(schema.pop("$defs", {}))
            schemas["Problem"] = schema
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    for parameter in operation.get("parameters", []):
                        if parameter.get("in") in ("path", "query"):  # as `PlainRequestLine` refuses
                            with_pattern(parameter.get("schema", {}), PLAIN_LINE)
                            for schema in [parameter.get("schema", {}), *parameter.get("schema", {}).get("anyOf", [])]:
                                if schema.get("format") == "date-time":  # a `Moment`: its years
                                    schema["pattern"] = MOMENT_PATTERN
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


# --- the app -------------------------------------------------------------------

def create_api(runtime: Runtime, routers: Sequence[APIRouter], *, title: str, description: str) -> FastAPI:
    settings = runtime.settings

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()

    api = FastAPI(title=title, description=description, version="1", lifespan=lifespan,
                  telemetry={"operation_spans": False, "metrics": False, "logs": False})
    api.state.runtime = runtime
    api.state.verifier = TokenVerifier(settings)
    problems.install(api)
    included = [*routers, *([operations_router()] if runtime.app is not None else [])]
    for router in included:  # parked records and projections live in the service's store
        for route in router.routes:
            declare_problems(route)  # before the router is included: including copies its routes
        api.include_router(router)

    @api.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Alive."""
        return {"status": "ok", "service": settings.service}

    if runtime.relay is not None:
        signer = runtime.relay.checkpoints.signer

        @api.get("/v1/keys", tags=["audit"])
        async def keys() -> dict[str, Any]:
            """The public key that signs this service's checkpoints on `audit.checkpoints` (public:
            anyone verifying the log needs it). `verifier_key` is the form Go's sumdb/note reads."""
            return {"service": settings.service, "checkpoint_origin": signer.name, "keys": [signer.describe()]}

    @api.get("/readyz", tags=["operations"],
             responses={503: {"description": "not ready: the same checks, `ready` false"}})
    async def readyz() -> Response:
        """Ready: the store answers, Kafka is connected, the consumers' and other background jobs'
        lag is under the bound."""
        checks: dict[str, Any] = {}
        ready = True
        try:
            if runtime.app is not None:
                await asyncio.wait_for(asyncio.to_thread(runtime.app.recorder.max_notification_id), 5)
                checks["store"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["store"] = f"unreachable: {type(exc).__name__}"
            ready = False
        if settings.role != "api":  # an API-only process runs no relay nor consumers
            if runtime.relay:
                checks["relay"] = "ok" if runtime.relay.active else "not connected"
                checks["relay_lag"] = await asyncio.to_thread(runtime.relay.lag)
                ready = ready and runtime.relay.active
            for consumer in runtime.consumers:
                topics = ",".join(consumer.topics)
                checks[f"consumer {topics}"] = "ok" if consumer.running else "not connected"
                checks[f"consumer_lag {topics}"] = consumer.lag
                ready = ready and consumer.running and consumer.lag <= settings.ready_max_lag
            for worker in runtime.workers:
                lag = sum(worker.lag_by_partition.values())
                checks[worker.name] = "ok" if worker.running else "not connected"
                checks[f"{worker.name}_lag"] = lag
                ready = ready and worker.running and lag <= settings.ready_max_lag
        return Response(json.dumps({"ready": ready, "checks": checks}), status_code=200 if ready else 503,
                        media_type="application/json")

    @api.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format: relay lag, consumer lag, records processed and parked, other
        background jobs' state and lag, commands."""
        lines = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.extend([f"# HELP passerelle_{name} {help_}", f"# TYPE passerelle_{name} {kind}"])
            lines.extend(f"passerelle_{name}{labels} {value}" for labels, value in samples)

        service = f'service="{settings.service}"'
        if runtime.relay:
            metric("relay_lag_events", "gauge", "events stored but not yet acknowledged by Kafka",
                   [(f"{{{service}}}", await asyncio.to_thread(runtime.relay.lag))])
            metric("relay_published_total", "counter", "events published since start",
                   [(f"{{{service}}}", runtime.relay.published)])
        metric("consumer_lag_records", "gauge", "records on Kafka not yet processed",
               [(f'{{{service},partition="{p}"}}', lag) for c in runtime.consumers for p, lag in c.lag_by_partition.items()])
        metric("consumer_processed_total", "counter", "records processed since start",
               [(f'{{{service},topics="{",".join(c.topics)}"}}', c.processed) for c in runtime.consumers])
        metric("consumer_parked_total", "counter", "records parked in the dead-letter topic since start",
               [(f'{{{service},topics="{",".join(c.topics)}"}}', c.parked) for c in runtime.consumers])
        if runtime.workers:
            metric("worker_running", "gauge", "1 when the background job is connected and working",
                   [(f'{{{service},worker="{w.name}"}}', int(w.running)) for w in runtime.workers])
            metric("worker_lag_records", "gauge", "records on Kafka the background job has not read yet",
                   [(f'{{{service},worker="{w.name}",partition="{p}"}}', lag)
                    for w in runtime.workers for p, lag in w.lag_by_partition.items()])
            metric("worker_processed_total", "counter", "records the background job read and is done with",
                   [(f'{{{service},worker="{w.name}"}}', w.processed) for w in runtime.workers])
            metric("worker_published_total", "counter", "records the background job wrote",
                   [(f'{{{service},worker="{w.name}"}}', w.published) for w in runtime.workers])
        metric("commands_total", "counter", "commands answered, by route and status",
               [(f'{{{service},route="{route}",status="{status}"}}', n) for (route, status), n in sorted(runtime.commands.items())])
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    for route in api.router.routes:
        declare_problems(route)
    with_problem_schema(api)
    # The last added is the outermost: CORS, then the answer to the unexpected (errors of the
    # middlewares inside it too), then what refuses hostile input before the app reads it.
    api.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    api.add_middleware(PlainRequestLine)
    api.add_middleware(AnswerUnexpected)
    api.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=True,
                       allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"])
    FastAPIInstrumentor.instrument_app(api, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"],
                                       server_request_hook=without_query_in_span)
    return api


def serve(service: str, create_app: Callable[[Settings], FastAPI]) -> None:
    """Run a service's app with uvicorn: telemetry first, then the server on its fixed port."""
    import uvicorn

    from shared import telemetry

    settings = Settings(service=service)
    telemetry.setup(service, settings.trace_exporter, settings.log_level, settings.trace_sql)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.http_port, log_config=None,
                timeout_graceful_shutdown=10)
