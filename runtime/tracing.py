"""OpenTelemetry tracing: one trace per request, through Temporal, to every activity.

``tracing_interceptors()`` is what each process passes to its Temporal client: Temporal's own
``TracingInterceptor`` propagates the span context in workflow and activity headers, so a trace
started by an API request continues in the workflow and in each step the worker runs. Spans are
exported over OTLP (HTTP) when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) variable is set; otherwise nothing is exported and the
spans cost next to nothing. ``OTEL_SERVICE_NAME`` and the other standard variables apply.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def configure_tracing(service_name: str) -> None:
    """Install the process's tracer provider, exporting over OTLP when an endpoint is set.

    Called once at process start (worker, API); a provider installed earlier (by a test, or by
    an OpenTelemetry distribution's auto-instrumentation) is left alone.
    """
    if not any(os.environ.get(name) for name in _ENDPOINT_VARIABLES):
        return
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def tracing_interceptors() -> list[Interceptor]:
    """The client interceptors that carry the trace through Temporal (workers built from the
    client inherit them)."""
    return [TracingInterceptor()]
