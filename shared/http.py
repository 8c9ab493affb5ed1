"""The HTTP edge every service shares: the FastAPI app, its lifespan, health, idempotency.

`create_api` builds a service's FastAPI app around its `Runtime` (the
application, relay, consumers and projector wired by `main.py`) and runs them
for as long as the app runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from opentelemetry import propagate
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import problems
from shared.auth import Principal, Role, TokenVerifier, principal, requires
from shared.consumer import Consumer
from shared.projections import Projector
from shared.relay import Relay
from shared.settings import Settings
from shared.store import CommandContext, ServiceApplication, _context, _idempotency, _Idempotency

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

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem(413, f"the body must not exceed {self.max_bytes} bytes")
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


# --- commands: who acts, and Idempotency-Key -----------------------------------

async def command_context(request: Request, who: Annotated[Principal, Depends(principal)]) -> CommandContext:
    """Sets who is acting (and the trace) for the events the request will save.

    With an `Idempotency-Key`, a request already answered is answered again from
    the store and writes nothing (`Replayed`); the same key with another body is 422.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    key = request.headers.get("idempotency-key")
    request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
    context = CommandContext(actor=who.actor, partner_id=who.partner_id if who.has(Role.partner) else None,
                             causation_id=f"request:{key or request_id}",
                             traceparent=carrier.get("traceparent"))
    _context.set(context)  # the sync endpoint runs in a thread with a copy of this context
    if key is not None and request.method == "POST":
        if not 1 <= len(key) <= 200:
            raise problems.HTTPException(422, "Idempotency-Key must be 1 to 200 characters")
        body = await request.body()
        fingerprint = hashlib.sha256(
            request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
        ).hexdigest()
        scoped = f"{who.sub}:{key}"
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
    return context


class CommandRoute(APIRoute):
    """Stores the answer of a command sent with an Idempotency-Key, for its replays."""

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
                  responses={422: {"description": "Invalid request (application/problem+json)"}},
                  telemetry={"operation_spans": False, "metrics": False, "logs": False})
    api.state.runtime = runtime
    api.state.verifier = TokenVerifier(settings)
    problems.install(api)
    for router in routers:
        api.include_router(router)
    if runtime.app is not None:  # parked records and projections live in the service's store
        api.include_router(operations_router())

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

    @api.get("/readyz", tags=["operations"])
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

    api.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=True,
                       allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"])
    api.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    FastAPIInstrumentor.instrument_app(api, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"])
    return api


def serve(service: str, create_app: Callable[[Settings], FastAPI]) -> None:
    """Run a service's app with uvicorn: telemetry first, then the server on its fixed port."""
    import uvicorn

    from shared import telemetry

    settings = Settings(service=service)
    telemetry.setup(service, settings.trace_exporter, settings.log_level, settings.trace_sql)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.http_port, log_config=None,
                timeout_graceful_shutdown=10)
