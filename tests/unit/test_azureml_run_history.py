"""A failed job's error is read through one private azure-ai-ml call, pinned to the SDK release it was checked on."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest

from aztrain.adapters.compute.azureml import RUN_HISTORY_SDK_VERSION, connect, run_history_error
from aztrain.service.settings import Settings
from tests.fakes.aml_service import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeAzureML, FakeCredential, Job

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")  # azure-ai-ml's schemas


@pytest.fixture
def fake() -> Iterator[FakeAzureML]:
    service = FakeAzureML()
    yield service
    assert service.unhandled == []


@pytest.fixture
def ml(fake: FakeAzureML) -> Any:
    settings = Settings(aml_subscription_id=SUBSCRIPTION, aml_resource_group=RESOURCE_GROUP, aml_workspace=WORKSPACE)
    return connect(settings, credential=FakeCredential(), transport=fake.transport())


def test_the_installed_sdk_is_the_release_the_private_call_was_checked_on():
    installed = version("azure-ai-ml")
    assert installed == RUN_HISTORY_SDK_VERSION, (
        f"azure-ai-ml {installed} is installed; `run_history_error` uses its private "
        f"`jobs._runs_operations.get_run`, checked on {RUN_HISTORY_SDK_VERSION}. Check that call (and whether a "
        "public way to read a job's error exists now), then update RUN_HISTORY_SDK_VERSION."
    )


def test_the_private_call_has_the_shape_run_history_error_relies_on():
    from azure.ai.ml.operations import JobOperations
    from azure.ai.ml.operations._run_operations import RunOperations

    assert isinstance(inspect.getattr_static(JobOperations, "_runs_operations"), property)
    assert list(inspect.signature(RunOperations.get_run).parameters) == ["self", "run_id"]


def test_an_error_is_code_and_message_with_inner_codes_folded_into_the_code(ml, fake):
    fake.jobs["j1"] = job_without_cluster("j1")
    fake.fail("j1", "ServiceError", "Job preparation failed.", inner="ImagePullError")
    assert run_history_error(ml, "j1") == {"code": "ServiceError/ImagePullError", "message": "Job preparation failed."}


def test_a_run_without_an_error_has_none_and_a_missing_run_says_so(ml, fake):
    fake.jobs["j2"] = job_without_cluster("j2")
    assert run_history_error(ml, "j2") == {}
    assert run_history_error(ml, "aztrain-gone") == {
        "code": "NotFound",
        "message": "Azure ML job aztrain-gone no longer exists",
    }


def job_without_cluster(name: str) -> Job:
    """A job the workspace knows, with what run history reads of it (no cluster: no nodes to allocate)."""
    return Job(
        resource={
            "name": name,
            "systemData": {"createdAt": "2026-01-01T00:00:00Z"},
            "properties": {"status": "Running", "experimentName": "digits", "computeId": "/computes/none"},
        }
    )
