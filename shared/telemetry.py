"""OpenTelemetry tracing and structured JSON logs.

The trace crosses services: HTTP request -> store (the stored event keeps the
request's traceparent) -> relay (publish span, `traceparent` record header) ->
consumer (process span in the other service) -> its store. Spans are added at
the edges and by the `traced` decorator, not woven through the domain.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

F = TypeVar("F", bound=Callable[..., Any])
_configured = False


class JsonLinesSpanExporter(SpanExporter):
    """Writes finished spans as JSON lines to a file (for local inspection and tests)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            ctx = s.get_span_context()
            lines.append(json.dumps({
                "name": s.name,
                "service": s.resource.attributes.get("service.name"),
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                "kind": s.kind.name,
                "start_ns": s.start_time,
                "duration_ms": round((s.end_time - s.start_time) / 1e6, 3) if s.end_time and s.start_time else None,
                "links": [format(link.context.trace_id, "032x") for link in s.links],
                "attributes": {k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in (s.attributes or {}).items()},
            }))
        with self._lock, open(self.path, "a") as f:
            f.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the current trace and span ids."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = format(ctx.trace_id, "032x")
            entry["span_id"] = format(ctx.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class WithoutQueryStrings(logging.Filter):
    """Cuts the query string off the request lines that uvicorn's access log and httpx write.

    A query string may hold personal data (a name searched, a reason given), and none of
    ours needs to be in a log: the path is logged, what follows `?` is not.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query(arg) for arg in record.args)
        return True


def _without_query(value: Any) -> Any:
    text = value if isinstance(value, str) else str(value) if type(value).__name__ == "URL" else None
    if text is not None and "?" in text and "/" in text:
        return text.split("?", 1)[0]
    return value


QUERY_LOGGERS = ("uvicorn.access", "httpx")


def hide_query_strings() -> None:
    for name in QUERY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, WithoutQueryStrings) for f in logger.filters):
            logger.addFilter(WithoutQueryStrings())


def without_query_in_span(span: Any, scope: dict[str, Any]) -> None:
    """The HTTP server span keeps the path, not the query string (the same reason as above)."""
    if span is None or not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in ("http.url", "url.full"):
        value = attributes.get(name)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(name, value.split("?", 1)[0])
    if attributes.get("url.query"):
        span.set_attribute("url.query", "")


def setup(service: str, exporter: str = "none", log_level: str = "INFO", trace_sql: bool = False) -> None:
    """Once per process: the tracer provider and JSON logs.

    exporter: "none" (spans made, not exported), "console", or "file:<path>".
    trace_sql: a span for every SQL statement (psycopg, SQLAlchemy). Off by default: at
    about ten statements per command it costs more CPU than the command's own work, and
    the `eventstore save` and projection spans already time the store.
    """
    global _configured
    if _configured:
        return
    _configured = True
    provider = TracerProvider(resource=Resource.create({"service.name": f"passerelle-{service}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter.startswith("file:"):
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(exporter[5:])))
    trace.set_tracer_provider(provider)
    if trace_sql:
        # Statements of the store (psycopg) and the read models (SQLAlchemy) in the trace.
        # Instrumentors are process-wide singletons: done once, here, before any pool exists.
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        PsycopgInstrumentor().instrument(tracer_provider=provider)
        SQLAlchemyInstrumentor().instrument(tracer_provider=provider)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level)
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel("WARNING")
    hide_query_strings()


def traced(name: str | None = None) -> Callable[[F], F]:
    """Decorate a function so each call is a span (named after the function by default)."""

    def decorate(func: F) -> F:
        span_name = name or func.__qualname__

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with trace.get_tracer("passerelle").start_as_current_span(span_name):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
