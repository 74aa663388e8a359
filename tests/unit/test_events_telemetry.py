"""Telemetry and the event publisher stay off the cold-start path; locally, telemetry can print to the console."""

from __future__ import annotations

import subprocess
import sys

from aztrain.settings import PROJECT_ROOT
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


def test_console_telemetry_prints_spans_when_asked() -> None:
    code = (
        "from aztrain import telemetry\n"
        "with telemetry.span('aztrain.blob_created', {'correlation_id': 'evt-1'}):\n"
        "    telemetry.run_entered('RUNNING', 'digits')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=True,
        env={"AZTRAIN_TELEMETRY": "console", "PATH": ""},
    )
    assert '"name": "aztrain.blob_created"' in out.stdout and '"correlation_id": "evt-1"' in out.stdout
