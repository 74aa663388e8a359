"""`ComputeBackend` on Azure Machine Learning: one AmlCompute cluster per compute profile, jobs as command jobs.

A job's distribution picks how Azure ML starts its processes: Horovod as an MPI job
(`MpiDistribution`, mpirun), PyTorch DDP as a PyTorch job (`PyTorchDistribution`), where Azure ML
starts `process_count_per_instance` processes per node and sets `MASTER_ADDR`, `MASTER_PORT`,
`WORLD_SIZE`, `NODE_RANK`, `RANK` and `LOCAL_RANK` for `env://` initialisation
(learn.microsoft.com/azure/machine-learning/how-to-train-distributed-gpu, "PyTorch").

The local backend's Azure twin. Clusters are created on first need with `min_instances=0`, so
Azure ML allocates nodes when a job is queued and releases them after the profile's idle time;
every call here is one or two quick REST calls, and the reconciler polls the rest.

`azure.ai.ml` takes seconds and ~100 MB to import, so it is imported inside the functions that
use it, on first use: importing this module (as `bootstrap` does) stays cheap.

It runs past 300 lines because it holds, beside the backend class, the pure builders of every
Azure ML definition it submits (compute, command job, model version, status map): `aztrain plan`
and the offline tests use the same builders, which keeps them next to the calls that send them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from aztrain.adapters.compute.aml_quota import Usages
from aztrain.domain.errors import BackendError, ConfigError
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.profiles import JOB_TIER_FOR_PRIORITY, ComputeProfile, cluster_for, load_profiles
from aztrain.domain.program import Places, program_argv, program_env
from aztrain.domain.records import ClusterSpec, JobObservation, JobPhase, JobSubmission, ModelVersion, Quota
from aztrain.service.code_snapshots import materialise
from aztrain.service.ports import DataStore
from aztrain.service.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

DATA_INPUT = "data"
SNAPSHOT_INPUT = "snapshot"
OUTPUT = "outputs"
#: Azure ML job statuses (`JobStatus` in azure-ai-ml; compared lower-case) → the control plane's job phases.
#: Finalizing still holds nodes and writes outputs, so it counts as running. NotResponding, Paused and
#: Unknown say nothing about the job's life: the reconciler asks again on its next pass.
PHASES: dict[str, JobPhase] = {
    "notstarted": JobPhase.PENDING,
    "queued": JobPhase.PENDING,
    "preparing": JobPhase.PENDING,
    "provisioning": JobPhase.PENDING,
    "starting": JobPhase.PENDING,
    "running": JobPhase.RUNNING,
    "finalizing": JobPhase.RUNNING,
    "cancelrequested": JobPhase.STOPPING,
    "completed": JobPhase.COMPLETED,
    "failed": JobPhase.FAILED,
    "canceled": JobPhase.CANCELED,
    "notresponding": JobPhase.UNKNOWN,
    "paused": JobPhase.UNKNOWN,
    "unknown": JobPhase.UNKNOWN,
}
#: How Azure ML reports low-priority nodes taken back mid-job: in the error message alone (code UserError,
#: no inner error), "AzureMLCompute job failed. PreemptionError: Nodes of this job got pre-empted. ..."
#: (as users report it: MicrosoftDocs/azure-docs#66288, microsoft/MLOpsPython#346).
_PREEMPTED = re.compile(r"preemption|pre-?empted", re.IGNORECASE)
#: Statuses Azure ML accepts a cancel in; in any other a refused cancel is expected and harmless
#: (a Finalizing job's cancel fails, Azure/azureml-assets#2496).
_CANCELLABLE = frozenset({"notstarted", "queued", "preparing", "provisioning", "starting", "running"})


def phase_of(status: str) -> JobPhase:
    """An Azure ML job status (any case) as a job phase; a status this version does not know is UNKNOWN."""
    return PHASES.get(status.strip().lower(), JobPhase.UNKNOWN)


def datastore_for(container: str) -> str:
    """The Azure ML datastore that exposes a storage container: `aztrain_<container>` (see docs/azureml.md)."""
    return "aztrain_" + container.replace("-", "_")


def datastore_uri(container: str, path: str) -> str:
    return f"azureml://datastores/{datastore_for(container)}/paths/{path}"


class Binding(str):
    """A place in the command that Azure ML fills in (`${{inputs.data}}`): ours, so it is left unquoted."""

    __slots__ = ()


#: Where Azure ML puts the run's files: the command's input and output bindings, substituted before it runs.
PLACES = Places(
    data_dir=Binding(f"${{{{inputs.{DATA_INPUT}}}}}"),
    snapshot_file=Binding(f"${{{{inputs.{SNAPSHOT_INPUT}}}}}"),
    output_dir=Binding(f"${{{{outputs.{OUTPUT}}}}}"),
    checkpoint_dir=Binding(f"${{{{outputs.{OUTPUT}}}}}/checkpoints"),
)


def trainer_command(job: JobSubmission) -> str:
    """The job's program (`aztrain.domain.program`) as Azure ML's command string, every part shell-quoted.

    `env` sets the contract's variables (docs/trainer.md), then the program runs: the built-in
    trainer with its flags, or the user's entrypoint with `--name value` per argument. The whole
    data prefix is mounted; the snapshot file names the blobs the run reads. Only the bindings
    stay unquoted, for Azure ML to substitute; no part taken from a manifest can leave its quotes.
    """
    env = [
        f"{name}={value}" if isinstance(value, Binding) else shlex.quote(f"{name}={value}")
        for name, value in program_env(job, PLACES).items()
    ]
    program = [word if isinstance(word, Binding) else shlex.quote(word) for word in program_argv(job, PLACES)]
    return " ".join(["env", *env, *program])


#: Where user code snapshots are laid out for upload; Azure ML names code by content too, so each is sent once.
_CODE_CACHE = Path(tempfile.gettempdir()) / "aztrain-code" / "snapshots"
#: The image an environment built from a requirements or conda file starts from: Azure ML's OpenMPI image
#: (mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04, the base of its curated training environments).
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


def environment_for(job: JobSubmission, *, default: str, code: Path) -> Any:
    """The job's environment: a registered one's reference, an image, or one built from a file of the code snapshot.

    A registered `name@version` is the SDK's `name:version` (`name@latest` it resolves itself);
    a requirements file becomes a conda file with those pip requirements. A built environment is
    named by the file's hash, so it is built and registered once per distinct file.
    """
    from azure.ai.ml.entities import Environment

    spec = job.environment
    if not spec:
        return default.removeprefix("azureml:")  # the SDK resolves `name@label` only without the YAML-style prefix
    if "registered" in spec:
        name, _, version = spec["registered"].partition("@")
        return spec["registered"] if version == "latest" else f"{name}:{version}"
    if "image" in spec:
        return Environment(image=spec["image"])
    text = (code / (spec.get("requirements") or spec["conda"])).read_text()
    if "requirements" in spec:
        pip = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        conda: dict[str, Any] = {"name": "aztrain", "dependencies": ["python=3.11", "pip", {"pip": pip}]}
    else:
        conda = yaml.safe_load(text)
    digest = hashlib.sha256(json.dumps([BASE_IMAGE, conda], sort_keys=True).encode()).hexdigest()[:16]
    return Environment(name=f"aztrain-{digest}", version="1", image=BASE_IMAGE, conda_file=conda)


def build_compute(profile: ComputeProfile, *, identity: str = "") -> Any:
    """The profile's `AmlCompute`: zero nodes at rest, up to `max_nodes` while jobs run.

    `identity` (a user-assigned identity's resource id) is what the nodes mount identity-based
    datastores with; without one, datastores need stored credentials.
    """
    from azure.ai.ml.entities import AmlCompute, IdentityConfiguration, ManagedIdentityConfiguration

    return AmlCompute(
        name=profile.cluster,
        size=profile.vm_size,
        tier=profile.tier,
        min_instances=0,
        max_instances=profile.max_nodes,
        idle_time_before_scale_down=profile.idle_seconds_before_scale_down,
        ssh_public_access_enabled=False,  # nobody logs into training nodes
        identity=IdentityConfiguration(
            type="user_assigned", user_assigned_identities=[ManagedIdentityConfiguration(resource_id=identity)]
        )
        if identity
        else None,
        tags={"aztrain.profile": profile.name},
    )


def build_job(job: JobSubmission, *, environment: Any, code: Path, identity: str = "") -> Any:
    """The command job for a submission: its distribution, data and its snapshot read-only, outputs read-write.

    On a cluster profile it runs on the profile's cluster; on a serverless one (`serverless_resources`)
    on nodes Azure ML provisions for it alone.
    """
    from azure.ai.ml import Input, Output, command

    return command(
        name=job.name,
        display_name=f"{job.job} {job.run_id}",
        experiment_name=job.job,
        code=str(code),
        command=trainer_command(job),
        environment=environment,  # what `environment_for` made of the job's
        **(
            serverless_resources(job.cluster, identity=identity)
            if job.cluster.serverless
            else {"compute": job.cluster.name}
        ),
        instance_count=job.cluster.nodes,
        distribution=distribution_for(job),
        inputs={
            DATA_INPUT: Input(
                type="uri_folder", path=datastore_uri(job.data_container, job.data_prefix), mode="ro_mount"
            ),
            SNAPSHOT_INPUT: Input(
                type="uri_file", path=datastore_uri(job.output_container, job.snapshot), mode="download"
            ),
        },
        outputs={
            # Checkpoints, model.pt and metrics.json land where the control plane reads them.
            OUTPUT: Output(
                type="uri_folder",
                path=datastore_uri(job.output_container, job.output_prefix + "outputs/"),
                mode="rw_mount",
            )
        },
        timeout=job.max_runtime_seconds,
        tags=job.tags,
    )


def serverless_resources(spec: ClusterSpec, *, identity: str) -> dict[str, Any]:
    """`command()`'s arguments for serverless compute: no compute, the VM size, the job tier, the identity.

    A command job without a compute target runs on serverless compute, sized by
    `resources.instance_type` and `instance_count`, on the spot or standard tier of
    `queue_settings.job_tier` (learn.microsoft.com/azure/machine-learning/how-to-use-serverless-compute;
    azure-ai-ml 1.35.2 `command(instance_type=, instance_count=, job_tier=)`, which builds the job's
    `JobResourceConfiguration` and `QueueSettings`). The job runs as `identity`, the user-assigned
    identity attached to the workspace (infra/modules/aml.bicep), which reads the datastores.
    """
    from azure.ai.ml.entities import ManagedIdentityConfiguration

    return {
        "instance_type": spec.vm_size,
        "job_tier": JOB_TIER_FOR_PRIORITY[spec.priority],
        "identity": ManagedIdentityConfiguration(resource_id=identity) if identity else None,
    }


def distribution_for(job: JobSubmission) -> Any:
    """`MpiDistribution` for Horovod, `PyTorchDistribution` for DDP: `processes_per_node` processes on each node.

    The SDK sends them as `{"distributionType": "Mpi" | "PyTorch", "processCountPerInstance": n}`
    (the REST spec's `DistributionConfiguration` subtypes `Mpi` and `PyTorch`; azure-ai-ml's
    `PyTorchDistribution(process_count_per_instance=...)`,
    learn.microsoft.com/python/api/azure-ai-ml/azure.ai.ml.pytorchdistribution).
    """
    from azure.ai.ml import MpiDistribution, PyTorchDistribution

    kinds = {"horovod": MpiDistribution, "pytorch": PyTorchDistribution}
    return kinds[job.distribution](process_count_per_instance=job.cluster.processes_per_node)


def build_model(model: ModelVersion) -> Any:
    """The workspace model version for a registered one: same name and version, model.pt in place, lineage as tags."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model

    container, path = model.artifact.split("/", 1)
    return Model(
        name=model.name,
        version=str(model.version),
        type=AssetTypes.CUSTOM_MODEL,
        path=datastore_uri(container, path),  # where the run wrote it: registering copies nothing
        description=f"Trained by aztrain run {model.run_id}. {model.gate}".strip(),
        tags={
            "aztrain.run": model.run_id,
            "aztrain.snapshot": model.snapshot_id,
            "aztrain.manifest": model.manifest_hash,
            "aztrain.promoted": str(model.promoted).lower(),
        },
        # Scalar metrics, so the studio's model list can show and sort by them.
        properties={k: str(v) for k, v in model.metrics.items() if isinstance(v, int | float | str | bool)},
    )


@functools.cache
def trainer_code() -> Path:
    """A folder holding only the `trainer` package: the job's code snapshot, where `python -m trainer.train` resolves.

    Named by a hash of its content, so an unchanged trainer is the same folder, and Azure ML
    (which names code snapshots by content hash too) uploads it once.
    """
    source = PROJECT_ROOT / "trainer"
    # Python sources only: the environment's Dockerfile and caches are not the job's code.
    files = sorted(p for p in source.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes())
    folder = Path(tempfile.gettempdir()) / "aztrain-code" / digest.hexdigest()[:16]
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent))
        for path in files:
            target = staging / "trainer" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        try:
            os.replace(staging, folder)
        except OSError:  # another process staged it first: same content
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def require_workspace(settings: Settings) -> None:
    """`ConfigError` naming every workspace setting that is missing."""
    missing = [
        name
        for name, value in (
            ("AZTRAIN_AML_SUBSCRIPTION_ID", settings.aml_subscription_id),
            ("AZTRAIN_AML_RESOURCE_GROUP", settings.aml_resource_group),
            ("AZTRAIN_AML_WORKSPACE", settings.aml_workspace),
        )
        if not value
    ]
    if missing:
        raise ConfigError(f"the azureml backend needs {', '.join(missing)}", setting=missing[0])


def connect(settings: Settings, credential: Any = None, **client_kwargs: Any) -> Any:
    """An `MLClient` on the configured workspace, as the function's managed identity unless told otherwise.

    `client_kwargs` reach every REST client under it (tests pass `transport=`).
    """
    require_workspace(settings)
    from azure.ai.ml import MLClient

    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return MLClient(
        credential,
        settings.aml_subscription_id,
        settings.aml_resource_group,
        settings.aml_workspace,
        show_progress=False,
        enable_telemetry=False,
        **client_kwargs,
    )


class AzureMLBackend:
    """Clusters and distributed training jobs (Horovod over MPI, or PyTorch DDP) in an Azure ML workspace."""

    name = "azureml"

    def __init__(self, settings: Settings, *, client: Any = None, data: DataStore | None = None) -> None:
        require_workspace(settings)  # at startup, not halfway through a run's first step
        self._settings = settings
        self._profiles = load_profiles(settings.compute_profiles, settings.allowed_profiles)
        self._by_cluster = {p.cluster: p for p in self._profiles.values()}
        self._client = client
        self._data = data
        self._usages = Usages(lambda: self._ml)

    @property
    def _ml(self) -> Any:
        """The `MLClient`, connected on first use (never at import or construction)."""
        if self._client is None:
            self._client = connect(self._settings)
        return self._client

    # ------------------------------------------------------------ clusters
    def cluster_for(self, compute: ComputeSpec) -> ClusterSpec:
        return cluster_for(self._profiles, compute)

    def quota(self, spec: ClusterSpec) -> Quota | None:
        """The workspace region's vCPU quota `spec`'s nodes count against (`MLClient.compute.list_usage`)."""
        return self._usages.quota(spec)

    def ensure_cluster(self, spec: ClusterSpec) -> int:
        """Create the cluster on first need. Returns `spec.nodes` once it is provisioned, else 0.

        With `min_instances=0` Azure ML allocates nodes when a job is queued, so a provisioned
        cluster that can grow to `spec.nodes` is ready: waiting for idle nodes first would wait forever.
        Serverless nodes need no cluster: they are ready at once, and nothing is created.
        """
        if spec.serverless:
            return spec.nodes
        profile = self._by_cluster[spec.name]
        cluster = self._get_cluster(spec.name)
        if cluster is None:
            log.info("azureml cluster %s: creating (%s, %s)", spec.name, profile.vm_size, profile.tier)
            self._ml.compute.begin_create_or_update(self._compute(profile))
            return 0
        state = _text(cluster.provisioning_state)
        if state == "Failed":
            raise BackendError(f"cluster {spec.name} failed to provision: {cluster.provisioning_errors or 'unknown'}")
        if state != "Succeeded":  # Creating, Updating, or Deleting after an idle delete: ask again later
            return 0
        if _scale_settings(cluster) != _scale_settings(self._compute(profile)):
            log.info("azureml cluster %s: updating scale settings to the profile's", spec.name)
            self._ml.compute.begin_create_or_update(self._compute(profile))
        return spec.nodes if (cluster.max_instances or 0) >= spec.nodes else 0

    def scale_to_zero(self, cluster: str) -> None:
        """Make sure idle nodes go: min 0 and the profile's idle time, or delete the cluster if the profile says so."""
        current = self._get_cluster(cluster)
        profile = self._by_cluster.get(cluster)
        if current is None or profile is None or _text(current.provisioning_state) == "Deleting":
            return
        if profile.delete_when_idle:
            log.info("azureml cluster %s: deleting (the profile deletes idle clusters)", cluster)
            self._ml.compute.begin_delete(cluster)
        elif _scale_settings(current) != _scale_settings(self._compute(profile)):
            log.info("azureml cluster %s: restoring min 0 nodes and the profile's idle time", cluster)
            self._ml.compute.begin_create_or_update(self._compute(profile))

    def cluster_nodes(self, cluster: str) -> int:
        """Nodes Azure ML has allocated to the cluster now (0 when it does not exist)."""
        try:
            return len(list(self._ml.compute.list_nodes(cluster)))
        except ResourceNotFoundError:
            return 0

    def _compute(self, profile: ComputeProfile) -> Any:
        return build_compute(profile, identity=self._settings.aml_compute_identity_id)

    def _get_cluster(self, name: str) -> Any:
        try:
            return self._ml.compute.get(name)
        except ResourceNotFoundError:
            return None

    # ---------------------------------------------------------------- jobs
    def submit(self, job: JobSubmission) -> str:
        """Create the command job, or find it: the name comes from the run id, so a repeat finds the first."""
        existing = self._get_job(job.name)
        if existing is not None:
            return str(existing.name)
        definition = build_job(
            job,
            environment=self._environment(job),
            code=self._code(job),
            identity=self._settings.aml_compute_identity_id,
        )
        try:
            created = self._ml.jobs.create_or_update(definition)
        except ResourceExistsError:  # a concurrent submit of the same run won
            return job.name
        where = f"serverless {job.cluster.vm_size}" if job.cluster.serverless else job.cluster.name
        log.info("azureml job %s: submitted to %s", job.name, where)
        return str(created.name)

    def _code(self, job: JobSubmission) -> Path:
        """The folder Azure ML uploads as the job's code: the user's snapshot (laid out once), or the trainer."""
        if not job.code_snapshot:
            return trainer_code()
        from aztrain.service.bootstrap import build_data_store  # the composition root, imported on first need

        if self._data is None:
            self._data = build_data_store(self._settings)
        return materialise(self._data, job.output_container, job.code_snapshot, _CODE_CACHE)

    def _environment(self, job: JobSubmission) -> Any:
        """The job's environment, built and registered first when it comes from a file of the code snapshot."""
        built = environment_for(job, default=self._settings.aml_environment, code=self._code(job))
        if isinstance(built, str) or built.name is None:  # registered, or an image Azure ML resolves itself
            return built
        try:
            self._ml.environments.get(built.name, version=built.version)
        except ResourceNotFoundError:  # built once per distinct file: its name is the file's hash
            log.info("azureml environment %s:%s: registering from the code snapshot", built.name, built.version)
            self._ml.environments.create_or_update(built)
        return f"{built.name}:{built.version}"

    def observe(self, backend_job_id: str) -> JobObservation:
        """One GET of the job; a failed job's reason (and whether it was preempted) from its run history."""
        job = self._get_job(backend_job_id)
        if job is None:
            return JobObservation(JobPhase.FAILED, "NotFound", f"Azure ML job {backend_job_id} no longer exists")
        status = _text(job.status)
        phase = phase_of(status)
        if phase is not JobPhase.FAILED:
            return JobObservation(phase, status)
        error = run_history_error(self._ml, backend_job_id)
        reason = " ".join(f"{error['code']}: {error['message']}".split())[:500] if error else ""
        preempted = bool(error) and bool(_PREEMPTED.search(f"{error['code']} {error['message']}"))
        return JobObservation(phase, status, reason, preempted)

    def phase_of(self, status: str) -> JobPhase:
        return phase_of(status)

    def cancel(self, backend_job_id: str) -> None:
        """Ask Azure ML to cancel; a job that is gone, finished or already stopping needs nothing."""
        try:
            # polling=False: the cancel is accepted at once; the reconciler watches the status.
            self._ml.jobs.begin_cancel(backend_job_id, polling=False)
        except ResourceNotFoundError:
            return
        except HttpResponseError:
            # Azure ML refuses to cancel a job that is finalizing, stopping, not responding or finished;
            # the reconciler settles it from the job's own status. Anything else is worth a retry.
            if _text(getattr(self._get_job(backend_job_id), "status", "")).lower() in _CANCELLABLE:
                raise

    # ---------------------------------------------------------------- models
    def publish_model(self, model: ModelVersion) -> None:
        """Create the version in the workspace's model registry; repeating it rewrites the same version."""
        try:
            self._ml.models.create_or_update(build_model(model))
        except HttpResponseError as exc:
            raise BackendError(f"model {model.name}:{model.version}: {exc.message}") from exc
        log.info("azureml model %s:%s registered", model.name, model.version)

    def _get_job(self, name: str) -> Any:
        try:
            return self._ml.jobs.get(name)
        except ResourceNotFoundError:
            return None


#: The azure-ai-ml release `run_history_error` was checked against. Its call is private SDK API, so
#: `tests/unit/test_azureml_run_history.py` fails on any other release until it is checked again.
RUN_HISTORY_SDK_VERSION = "1.35.2"


def run_history_error(ml: Any, backend_job_id: str) -> dict[str, str]:
    """A job's error from Azure ML run history: code and message, inner codes folded into the code ('/').

    `{}` when the run records no error. The job resource (ARM `JobBase`) carries no error, and the
    public `jobs.stream` reads it from run history only while printing the job's logs; so this is
    the one place that calls the SDK's private `jobs._runs_operations.get_run` (GET
    `history/v1.0/.../runs/<name>`), the same call `jobs.get` makes for pipeline child jobs.
    """
    try:
        run = ml.jobs._runs_operations.get_run(backend_job_id)
    except ResourceNotFoundError:
        return {"code": "NotFound", "message": f"Azure ML job {backend_job_id} no longer exists"}
    root = run.error.error if run.error and run.error.error else None
    if root is None:
        return {}
    codes = [root.code or "Error"]
    inner = root.inner_error
    while inner is not None:
        codes.append(inner.code or "")
        inner = inner.inner_error
    return {"code": "/".join(c for c in codes if c), "message": root.message or ""}


def _text(value: Any) -> str:
    """A REST enum's wire value (`ProvisioningState.SUCCEEDED` → `Succeeded`), or the string itself."""
    return str(getattr(value, "value", value) or "")


def _scale_settings(cluster: Any) -> tuple[int, int, int]:
    """What scale-to-zero depends on: min nodes, max nodes, idle seconds before scale-down."""
    return (
        int(cluster.min_instances or 0),
        int(cluster.max_instances or 0),
        int(cluster.idle_time_before_scale_down or 0),
    )
