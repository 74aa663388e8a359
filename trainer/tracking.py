"""MLflow tracking, when `mlflow` is importable and a tracking URI is set (Azure ML sets both for a job)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any


class Tracker:
    """Logs to MLflow's active run, best effort: a tracking outage must not cost a training run."""

    def __init__(self, mlflow: ModuleType) -> None:
        self._mlflow: ModuleType | None = mlflow

    def log_params(self, params: dict[str, Any]) -> None:
        self._call(lambda mlflow: mlflow.log_params(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._call(lambda mlflow: mlflow.log_metrics(metrics, step=step))

    def _call(self, action: Callable[[ModuleType], object]) -> None:
        if self._mlflow is None:
            return
        try:
            action(self._mlflow)
        except Exception as exc:  # MLflow raises from its client, HTTP stack and store alike
            print(f"warning: MLflow logging failed, disabled for this run: {exc}", file=sys.stderr, flush=True)
            self._mlflow = None


def start_tracking() -> Tracker | None:
    """A tracker if MLflow is installed and `MLFLOW_TRACKING_URI` is set, else None."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    try:
        return Tracker(importlib.import_module("mlflow"))
    except ImportError:
        return None
