"""`aztrain plan <manifest>`: the Azure ML compute and job definitions a manifest becomes, offline.

Built by the same functions the Azure ML backend submits with and written in the SDK's own YAML
form (what `az ml compute create -f` and `az ml job create -f` read), without credentials or
network. Only what exists at submit time is a placeholder: the run id and the data snapshot id.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from aztrain.domain.manifest import parse_manifest
from aztrain.domain.profiles import cluster_for, load_profiles, select_profile
from aztrain.domain.records import JobSubmission
from aztrain.domain.runs import Run, RunState
from aztrain.service.settings import Settings
from aztrain.service.usecases.progress import submission_for

RUN_ID = "<run-id>"
SNAPSHOT_ID = "<snapshot-id>"
COMPUTE_SCHEMA = "https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json"
JOB_SCHEMA = "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json"


def render_plan(manifest_text: str | bytes, settings: Settings) -> str:
    """The AmlCompute cluster, then the command job, as YAML documents; `ManifestError` if the manifest cannot run.

    A serverless profile has no cluster: one document, the job, with no compute target, its
    `resources` (instance type and count) and `queue_settings.job_tier`.
    """
    from aztrain.adapters.compute.azureml import build_compute, build_job, trainer_code

    manifest = parse_manifest(manifest_text, source="plan", max_bytes=settings.max_manifest_bytes)
    profiles = load_profiles(settings.compute_profiles, settings.allowed_profiles)
    profile = select_profile(profiles, manifest.compute)
    run = Run.create(
        id=RUN_ID,
        job=manifest.name,
        state=RunState.ACCEPTED,
        at=datetime.now(UTC),
        trigger="plan",
        cause="plan",
        spec=manifest,
        manifest_hash=manifest.content_hash,
        snapshot_id=SNAPSHOT_ID,
    )
    submission = submission_for(
        run, cluster_for(profiles, manifest.compute), runs_container=settings.runs_container, attempt=1
    )
    identity = settings.aml_compute_identity_id
    code = trainer_code() if manifest.trainer.builtin else Path(f"<code snapshot {manifest.trainer.code}>")
    environment, which = plan_environment(submission, settings)
    job = build_job(submission, environment=environment, code=code, identity=identity)
    documents = [{"$schema": JOB_SCHEMA, **_plain(job._to_job()._to_dict())}]
    if not profile.serverless:
        compute = {"$schema": COMPUTE_SCHEMA, **_plain(build_compute(profile, identity=identity)._to_dict())}
        documents.insert(0, compute)
    where = "serverless compute (no cluster)" if profile.serverless else "its cluster"
    if profile.serverless and identity:  # the SDK's YAML form keeps the identity's type, not which one
        where += f"\n# the job runs as the workspace's user-assigned identity {identity}"
    header = (
        f"# aztrain plan for job {manifest.name} (manifest {manifest.content_hash[:12]}, distribution "
        f"{manifest.trainer.distribution}) on compute profile {profile.name}, {where}\n"
        f"# {RUN_ID} and {SNAPSHOT_ID} are assigned when the run starts.\n"
        f"# environment: {which}\n"
    )
    return header + yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)


def plan_environment(submission: JobSubmission, settings: Settings) -> tuple[Any, str]:
    """The job's environment as far as it is known offline, and in words which kind it is."""
    from aztrain.adapters.compute.azureml import BASE_IMAGE, environment_for

    spec = submission.environment
    source = spec.get("requirements") or spec.get("conda")
    if source:  # the file is in the code snapshot, which is in storage
        return f"<built from {source}>", (
            f"built from {source} of code snapshot {submission.code_snapshot} on {BASE_IMAGE}, "
            "registered once as aztrain-<hash of the file>:1"
        )
    which = (
        f"registered Azure ML environment {spec['registered']}"
        if "registered" in spec
        else f"the container image {spec['image']}"
        if "image" in spec
        else f"the control plane's default, {settings.aml_environment}"
    )
    return environment_for(submission, default=settings.aml_environment, code=Path()), which


def _plain(value: Any) -> Any:
    """The SDK's dicts hold OrderedDicts and enums; YAML wants plain data."""
    return json.loads(json.dumps(value, default=str))
