"""The Azure ML backend on serverless compute, and its quota readings, over the HTTP-level fake of Azure ML."""

from __future__ import annotations

import json

import pytest

from aztrain.adapters.compute.aml_quota import quota_of, usage_lines
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.records import ClusterSpec, JobPhase, Quota
from tests.fakes.aml_service import ARM
from tests.unit import test_azureml_backend as aml
from tests.unit.test_azureml_rest_schemas import FIXTURES

fake, backend, submission = aml.fake, aml.backend, aml.submission  # the backend's fixtures and submission
pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")  # azure-ai-ml's schemas


def serverless(backend, **compute: object) -> ClusterSpec:
    return backend.cluster_for(ComputeSpec.model_validate({"profile": "serverless-t4", **compute}))


def test_a_serverless_job_is_submitted_with_no_compute_and_no_cluster_is_made(backend, fake):
    spec = serverless(backend, nodes=2, priority="low")
    assert spec.serverless and backend.ensure_cluster(spec) == 2  # ready at once: nothing to provision
    job_id = backend.submit(submission(spec))
    properties = fake.jobs[job_id].resource["properties"]
    assert "computeId" not in properties
    assert properties["resources"]["instanceType"] == "Standard_NC4as_T4_v3"
    assert properties["resources"]["instanceCount"] == 2
    assert properties["queueSettings"] == {"jobTier": "Spot"}
    assert properties["identity"] == {"identityType": "Managed", "resourceId": aml.IDENTITY}
    assert fake.clusters == {} and fake.calls("PUT", "/computes/") == 0
    assert backend.observe(job_id).phase is JobPhase.PENDING


def test_a_preempted_spot_job_is_observed_as_preempted(backend, fake):
    job_id = backend.submit(submission(serverless(backend, priority="low")))
    fake.set_status(job_id, "Running")
    fake.preempt(job_id)
    seen = backend.observe(job_id)
    assert (seen.phase, seen.preempted) == (JobPhase.FAILED, True)


def test_the_fake_refuses_a_serverless_job_the_spec_would_not_take(fake):
    body = {"jobType": "Command", "resources": {"instanceCount": "two", "instanceType": "Standard_NC4as_T4_v3"}}
    assert "resources" in fake._serverless_problem(body)
    body = {
        "jobType": "Command",
        "resources": {"instanceType": "Standard_NC4as_T4_v3"},
        "queueSettings": {"jobTier": "Cheap"},
    }
    assert "queueSettings" in fake._serverless_problem(body)


def test_quota_is_the_familys_dedicated_line_or_the_regional_low_priority_total(backend, fake):
    fake.quotas["Standard NCASv3_T4 Family"] = 8
    fake.regional_limits["LowPriority"] = 12
    dedicated, spot = serverless(backend, nodes=2), serverless(backend, nodes=2, priority="low")
    assert backend.quota(dedicated) == Quota("standardNCASv3_T4Family", used=0, limit=8)
    assert backend.quota(spot) == Quota("Total Cluster LowPriority Regional vCPUs", used=0, limit=12)


def test_a_family_with_no_line_has_no_quota(backend, fake):
    del fake.quotas["Standard NCASv3_T4 Family"]
    assert backend.quota(serverless(backend)) == Quota("standardNCASv3_T4Family", used=0, limit=0)


def test_usage_counts_serverless_nodes_while_their_job_works(backend, fake, monkeypatch):
    monkeypatch.setattr("aztrain.adapters.compute.aml_quota.READ_SECONDS", 0.0)
    spec = serverless(backend, nodes=2)
    job_id = backend.submit(submission(spec))
    fake.set_status(job_id, "Running")
    assert backend.quota(spec) == Quota("standardNCASv3_T4Family", used=8, limit=64)
    fake.set_status(job_id, "Completed")
    assert backend.quota(spec).used == 0  # the nodes went with the job


def test_usages_are_read_once_per_interval(backend, fake):
    spec = serverless(backend)
    backend.quota(spec), backend.quota(spec)
    assert fake.calls("GET", "/usages") == 1


def test_the_specs_usage_example_reads_as_the_tighter_of_family_and_regional_lines():
    example = json.loads((FIXTURES / "examples" / "2024-04-01" / "Usage" / "list.json").read_text())
    lines = usage_lines(example["responses"]["200"]["body"]["value"])
    nc = ClusterSpec(
        "x", nodes=1, processes_per_node=1, vm_size="Standard_NC6", priority="dedicated", vm_family="standardNCFamily"
    )
    # The NC family has 12 of 24 free, the region 10 of 24: the region binds.
    assert quota_of(lines, nc) == Quota("Total Cluster Dedicated Regional vCPUs", used=14, limit=24)
    spot = ClusterSpec("x", 1, 1, "Standard_NC6", "low", vm_family="standardNCFamily")
    assert quota_of(lines, spot) == Quota("Total Cluster LowPriority Regional vCPUs", used=18, limit=50)
    ncv3 = ClusterSpec("x", 1, 1, "Standard_NC6s_v3", "dedicated", vm_family="standardNCSv3Family")
    assert quota_of(lines, ncv3) == Quota("standardNCSv3Family", used=0, limit=0)  # no line: no quota


def test_usage_replies_match_the_spec(backend, fake):
    from tests.unit.test_azureml_rest_schemas import problems

    backend.quota(serverless(backend))
    (reply,) = [r for m, url, r in fake.replies if m == "GET" and url.split("?")[0].endswith("/usages") and ARM in url]
    assert problems("Usages_List@2023-08-01-preview", reply.status, reply.body, reply.headers) == []
