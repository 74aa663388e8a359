"""The function app for tests that index it: azure-functions indexes an app only once per process."""

from __future__ import annotations

import importlib

import azure.functions as func

import function_app
from functions import dashboard, events, http_api, reconcile


def fresh_function_app() -> func.FunctionApp:
    """`function_app.app` built anew, blueprints included, whatever other tests in the session have indexed."""
    for blueprints in (http_api, events, reconcile, dashboard):
        importlib.reload(blueprints)
    return importlib.reload(function_app).app
