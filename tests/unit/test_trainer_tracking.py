"""MLflow tracking: used when installed and a tracking URI is set, and never the reason a run fails."""

from __future__ import annotations

import sys
import types

import pytest

from trainer.tracking import start_tracking


class FakeMlflow(types.ModuleType):
    def __init__(self, *, fail: bool = False) -> None:
        super().__init__("mlflow")
        self.calls: list[tuple[str, object, object]] = []
        self.fail = fail

    def log_params(self, params: dict[str, object]) -> None:
        self.calls.append(("params", params, None))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.fail:
            raise ConnectionError("tracking server unreachable")
        self.calls.append(("metrics", metrics, step))


def test_without_a_tracking_uri_nothing_is_tracked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "mlflow", FakeMlflow())
    assert start_tracking() is None


def test_without_mlflow_installed_nothing_is_tracked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "azureml://example")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an absent module looks like to import
    assert start_tracking() is None


def test_params_and_per_epoch_metrics_go_to_mlflow(monkeypatch: pytest.MonkeyPatch):
    fake = FakeMlflow()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "azureml://example")
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    tracker = start_tracking()
    assert tracker is not None
    tracker.log_params({"epochs": 5})
    tracker.log_metrics({"accuracy": 0.9}, step=1)
    assert fake.calls == [("params", {"epochs": 5}, None), ("metrics", {"accuracy": 0.9}, 1)]


def test_a_tracking_failure_warns_once_and_training_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    fake = FakeMlflow(fail=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "azureml://example")
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    tracker = start_tracking()
    assert tracker is not None
    tracker.log_metrics({"loss": 1.0}, step=1)
    tracker.log_metrics({"loss": 0.5}, step=2)
    tracker.log_params({"epochs": 5})
    assert fake.calls == []  # disabled after the first failure
    assert capsys.readouterr().err.count("MLflow logging failed") == 1
