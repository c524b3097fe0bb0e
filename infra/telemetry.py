"""OpenTelemetry set-up and W3C trace-context helpers (one trace across HTTP, outbox, broker).

Every component calls `tracer_provider()` once at start; `traceparent` strings travel in
envelopes and AMQP headers, and `context_from_traceparent` / `current_traceparent` turn them
into OpenTelemetry contexts and back.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def tracer_provider(
    service_name: str = "hisho", *, processors: tuple[SpanProcessor, ...] = ()
) -> TracerProvider:
    """Return the process's SDK tracer provider, installing it on first call."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        provider = current
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(provider)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def context_from_traceparent(
    traceparent: str | None, tracestate: str | None = None
) -> otel_context.Context:
    """Return the context a W3C `traceparent` continues (empty if absent or malformed)."""
    carrier: dict[str, str] = {}
    if traceparent:
        carrier["traceparent"] = traceparent
        if tracestate:
            carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier)


def current_traceparent(ctx: otel_context.Context | None = None) -> str | None:
    """Return the W3C `traceparent` of the current (or given) span, None outside one."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier.get("traceparent")
