"""OpenTelemetry traces and metrics, configured on first use and never on the cold-start import path.

Where they go is read from the environment once, when the first span or measurement is made:
`APPLICATIONINSIGHTS_CONNECTION_STRING` (set by `infra/`) exports to Application Insights through
`azure-monitor-opentelemetry`; `AZTRAIN_TELEMETRY=console` prints them (locally); otherwise
nothing is set up and every call here costs one cached lookup. This module imports no
OpenTelemetry package at import time, so `import function_app` stays cheap.

Metrics: `aztrain.runs.transitions` (runs by state), `aztrain.events.latency` (seconds from an
event's time to its handling), `aztrain.runs.waiting` (queue depth: runs not yet running),
`aztrain.cluster.seconds_to_zero`, and `aztrain.gpu.node_seconds` (nodes times the running time of each
ended run).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
NAME = "aztrain"


def trace_id_of(traceparent: str | None) -> str:
    """The trace id of a W3C `traceparent` header ('' when absent or malformed, or the all-zero id)."""
    match = _TRACEPARENT.match((traceparent or "").strip().lower())
    return match.group(1) if match and set(match.group(1)) != {"0"} else ""


@dataclass(frozen=True)
class _Instruments:
    tracer: Any
    transitions: Any
    latency: Any
    waiting: Any
    seconds_to_zero: Any
    node_seconds: Any


@functools.cache
def _instruments() -> _Instruments | None:
    """Set up the exporter the environment asks for, once; None when telemetry is off."""
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        from azure.monitor.opentelemetry import configure_azure_monitor

        # The connection string comes from the environment; infra/ turns local auth off (Authorization=AAD).
        aad = "Authorization=AAD" in os.environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "")
        configure_azure_monitor(**({"credential": _credential()} if aad else {}))
    elif os.environ.get("AZTRAIN_TELEMETRY", "").lower() == "console":
        _configure_console()
    else:
        return None
    from opentelemetry import metrics, trace

    meter = metrics.get_meter(NAME)
    return _Instruments(
        tracer=trace.get_tracer(NAME),
        transitions=meter.create_counter("aztrain.runs.transitions", unit="{run}", description="Runs entering a state"),
        latency=meter.create_histogram("aztrain.events.latency", unit="s", description="Event time to handling"),
        waiting=meter.create_gauge("aztrain.runs.waiting", unit="{run}", description="Runs not yet running"),
        seconds_to_zero=meter.create_histogram("aztrain.cluster.seconds_to_zero", unit="s"),
        node_seconds=meter.create_counter("aztrain.gpu.node_seconds", unit="s", description="Nodes x running time"),
    )


def _credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _configure_console() -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider([PeriodicExportingMetricReader(ConsoleMetricExporter())]))


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, str | int | float]) -> Iterator[None]:
    """A span around one piece of work (a trigger's handling), when telemetry is on."""
    instruments = _instruments()
    if instruments is None:
        yield
        return
    with instruments.tracer.start_as_current_span(name, attributes=dict(attributes)):
        yield


def run_entered(state: str, job: str) -> None:
    if instruments := _instruments():
        instruments.transitions.add(1, {"state": state, "job": job})


def event_handled(kind: str, latency_seconds: float) -> None:
    if instruments := _instruments():
        instruments.latency.record(latency_seconds, {"kind": kind})


def runs_waiting(count: Callable[[], int]) -> None:
    """Queue depth; `count` is called (a storage query) only when telemetry is on."""
    if instruments := _instruments():
        instruments.waiting.set(count())


def cluster_at_zero(cluster: str, seconds: float) -> None:
    if instruments := _instruments():
        instruments.seconds_to_zero.record(seconds, {"cluster": cluster})


def gpu_node_seconds(job: str, cluster: str, seconds: float) -> None:
    if instruments := _instruments():
        instruments.node_seconds.add(seconds, {"job": job, "cluster": cluster})
