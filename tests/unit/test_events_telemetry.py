"""Telemetry and the event publisher stay off the cold-start path; locally, telemetry can print to the console."""

from __future__ import annotations

import subprocess
import sys

from aztrain.service.settings import PROJECT_ROOT
from tests.unit.test_devhost_packaging import loaded_modules

CONFIGURED = """
import os
os.environ["APPLICATIONINSIGHTS_CONNECTION_STRING"] = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
os.environ["AZTRAIN_EVENTS_TOPIC_ENDPOINT"] = "https://topic.westeurope-1.eventgrid.azure.net/api/events"
"""


def test_importing_function_app_with_telemetry_and_a_topic_configured_loads_neither() -> None:
    modules = loaded_modules(CONFIGURED + "import function_app")
    assert "function_app" in modules
    heavy = ("opentelemetry", "azure.monitor", "azure.eventgrid")
    assert [name for name in modules if name.startswith(heavy)] == []


#: A run driven to completion on the in-memory fakes, in a span, with console telemetry.
RUN_TO_COMPLETION = """
from aztrain.service import telemetry
from aztrain.adapters.memory import FakeComputeBackend, InMemoryControlStore, InMemoryDataStore
from aztrain.service.facade import ControlPlane
from aztrain.service.settings import Settings
from tests.clock import Clock
from tests.contract.test_outbox import MANIFEST

plane = ControlPlane(settings=Settings(), store=InMemoryControlStore(), data=InMemoryDataStore(),
                     backend=FakeComputeBackend(), now=Clock())
plane.data.write("datasets", "digits/a.npz", b"x")
with telemetry.span("aztrain.blob_created", {"correlation_id": "evt-1"}):
    plane.submit(MANIFEST, trigger="http", cause="evt-1", source="http")
for _ in range(6):
    plane.reconcile()
"""


def test_console_telemetry_prints_the_spans_and_metrics_of_a_run() -> None:
    out = subprocess.run(
        [sys.executable, "-c", RUN_TO_COMPLETION],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=True,
        env={"AZTRAIN_TELEMETRY": "console", "PATH": ""},
    ).stdout
    assert '"name": "aztrain.blob_created"' in out and '"correlation_id": "evt-1"' in out
    for metric in ("runs.transitions", "runs.waiting", "cluster.seconds_to_zero", "gpu.node_seconds"):
        assert f'"name": "aztrain.{metric}"' in out, metric
    assert '"state": "COMPLETED"' in out
