"""Azure Machine Learning's REST API, in memory, under the real `MLClient`.

The fake sits below azure-core: a `requests` transport adapter mounted on the session of a real
`RequestsTransport`, which `MLClient(transport=...)` hands to every REST client it builds. The
SDK's own validation, serialization, ARM-id resolution, LRO polling and deserialization all run;
only the sockets are replaced. It answers what the aztrain adapter makes the SDK send:

- ARM (`management.azure.com`): the workspace; computes (GET, PUT, DELETE, listNodes, and the
  async-operation status the SDK's poller follows); jobs (GET, PUT, cancel); code assets (list by
  content hash, startPendingUpload, create); environment versions (to resolve `name@latest`); model
  versions (list newest first, get, create; a version's path cannot change, its tags can).
- Workspace discovery and run history (`<region>.api.azureml.ms`): where a job's error lives.
- Blob storage (`<account>.blob.core.windows.net`): the code snapshot upload. The SDK builds those
  clients itself without the MLClient's transport, so tests route them here with
  `patch_blob_uploads` (the tests' `fake` fixtures do).

Time is the test's (`advance`), and so are job statuses (`set_status`, `fail`, `preempt`), which a
real workspace reports as its jobs progress. What each behaviour rests on (`specs/` below is
`specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/preview/`
in Azure/azure-rest-api-specs; the fragments used are kept in `tests/fixtures/aml/`, see its README):

- Reply bodies of create/update compute, list nodes, create/get/cancel job and create model
  version, and every error body (ARM `ErrorResponse`), follow the response schemas of
  Compute_CreateOrUpdate / Compute_ListNodes (`specs/2023-08-01-preview/machineLearningServices.json`),
  Jobs_CreateOrUpdate / Jobs_Get (`2024-01-01-preview/mfe.json`), Jobs_Cancel (`2023-04-01-preview`)
  and ModelVersions_CreateOrUpdate (`2023-08-01-preview/mfe.json`): `tests/unit/test_azureml_rest_schemas.py`
  validates them against `tests/fixtures/aml/rest_schemas.json`.
- Compute create answers 201 with `Azure-AsyncOperation` and an update 200 (the operation's responses;
  x-ms-examples `Compute/createOrUpdate/BasicAmlCompute.json` and `AmlCompute.json`); `provisioningState`
  is `Creating` until provisioned, then `Succeeded`; a delete leaves it `Deleting` (the spec's
  `ProvisioningState` enum). Changing an existing cluster's VM size or priority is refused with 400
  (assumed; aztrain never asks, it names one cluster per size and tier).
- Nodes (`listNodes`, x-ms-example `Compute/listNodes.json`) are allocated while a job on the cluster
  is Preparing/Running/Finalizing and released `idle_time_before_scale_down` after its last job
  ends (AmlCompute `scaleSettings.nodeIdleTimeBeforeScaleDown`).
- Job create answers 201 with `status: NotStarted` (x-ms-example `Job/CommandJob/createOrUpdate.json`);
  statuses are the spec's `JobStatus` enum, and jobs on a deleting or unknown compute, with an
  unknown code or environment version, or with a `distribution` that is not one of the spec's
  `DistributionConfiguration` shapes (`Mpi`, `PyTorch`, ...), are refused.
- Cancel answers 202 with `Location` and `Retry-After` (x-ms-example `Job/cancel.json`, headers in
  the operation's responses). Only a job that has not started finalizing is cancelled: Azure ML
  refuses a job that is Finalizing (reported in Azure/azureml-assets#2496: "the job was finalizing
  and we tried cancelling it which is an error"), and one already stopping, finished, paused or
  not responding. The refusal's status and wording are not documented; the fake answers an ARM
  `ErrorResponse` with 400 `UserError` (assumed). A cancel lands at the next `advance` (assumed).
- A job's error comes from run history (`history/v1.0/.../runs/<name>`, read by azure-ai-ml's
  `RunOperations.get_run`; the `RunDetails`/`ErrorResponse` models of its runhistory client). A
  preempted low-priority job fails with the code `UserError` and the reason in the message alone,
  `innerError` null, worded as users report it: MicrosoftDocs/azure-docs#66288,
  Azure/MachineLearningNotebooks#1242, microsoft/MLOpsPython#346 ("UserError: AzureMLCompute job
  failed. PreemptionError: Nodes of this job got pre-empted. ...").
- A command job without `computeId` runs on serverless compute (how-to-use-serverless-compute):
  its `resources` and `queueSettings` are validated against the spec's `JobResourceConfiguration`
  and `QueueSettings` (`tests/fixtures/aml/rest_schemas.json`, README "Requests the fake checks");
  it must name a VM size the fake knows (`SIZES`) and run as a managed identity (the workspace's
  user-assigned one; refusals' status and wording assumed). Its nodes are its own while it is
  Preparing/Running/Finalizing, and go with it.
- Usages (Usages_List, `specs/2023-08-01-preview/machineLearningServices.json`; its example
  `Usage/list.json`, an excerpt kept in the fixtures): a dedicated line per family in `quotas`
  and a low-priority one with `limit: -1`, and the regional totals; in use is every cluster node
  (idle ones too) and every serverless job's nodes, by tier (a Spot job's count as low priority).
- A model version echoes what was sent plus `provisioningState` (x-ms-example
  `Workspace/ModelVersion/createOrUpdate.json`); `flavors: {}` when created without any (assumed:
  the SDK reads it as a dict); an existing version's path cannot change (a 400 "Asset paths cannot
  be updated."; status and wording assumed).
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3
from jsonschema import Draft202012Validator
from requests.adapters import HTTPAdapter

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
RESOURCE_GROUP = "rg-aztrain"
WORKSPACE = "mlw-aztrain"
LOCATION = "westeurope"
STORAGE_ACCOUNT = "stmlwaztrain"
TENANT = "00000000-0000-0000-0000-0000000000aa"

ARM = "management.azure.com"
REGION_API = f"{LOCATION}.api.azureml.ms"
PROVIDER = "Microsoft.MachineLearningServices"
WS_PATH = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/{PROVIDER}/workspaces/{WORKSPACE}"
#: Seconds a new cluster takes to provision, and a deletion to finish (fake time).
_SPEC_DEFINITIONS = json.loads((Path(__file__).parents[1] / "fixtures" / "aml" / "rest_schemas.json").read_text())
#: The spec's `DistributionConfiguration` (Mpi, PyTorch, ...): what a job's `distribution` must be.
_DISTRIBUTION = Draft202012Validator(
    {"$defs": _SPEC_DEFINITIONS["$defs"], "$ref": "#/$defs/mfe-2024-01-01-preview.DistributionConfiguration"}
)
#: The spec's `CommandJob` properties the job's program rests on: `codeId`, `command` (required, at least one
#: word character) and `environmentId` (required, likewise), each checked by its own schema.
_COMMAND_JOB = _SPEC_DEFINITIONS["$defs"]["mfe-2024-01-01-preview.CommandJob"]
_PROGRAM_FIELDS = {
    name: Draft202012Validator({"$defs": _SPEC_DEFINITIONS["$defs"], **_COMMAND_JOB["properties"][name]})
    for name in ("codeId", "command", "environmentId")
}
PROVISION_SECONDS = 60
DELETE_SECONDS = 90

#: Job statuses (compared lower-case: tests also send "running" or "RUNNING") while nodes are in use, and final ones.
BUSY = frozenset({"preparing", "running", "finalizing"})
FINAL = frozenset({"completed", "failed", "canceled"})
#: Statuses in which Azure ML accepts a cancel (compared lower-case); see the module docstring.
CANCELLABLE = frozenset({"notstarted", "queued", "preparing", "provisioning", "starting", "running"})
#: VM sizes the fake knows: vCPUs per node and the family name of their usage lines.
SIZES = {
    "Standard_NC4as_T4_v3": (4, "Standard NCASv3_T4 Family"),
    "Standard_NC24ads_A100_v4": (24, "Standard NCADSA100v4 Family"),
    "Standard_NC40ads_H100_v5": (40, "Standard NCadsH100v5 Family"),
    "Standard_DS3_v2": (4, "Standard DSv2 Family"),
}
REGIONAL = {
    "Dedicated": "Total Cluster Dedicated Regional vCPUs",
    "LowPriority": "Total Cluster LowPriority Regional vCPUs",
}
SCHEMAS = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "aml" / "rest_schemas.json").read_text())
PREEMPTION_MESSAGE = (
    "AzureMLCompute job failed. PreemptionError: Nodes of this job got pre-empted. "
    "Check if the run has failed or restarted. Reason: Received pre-emption warning signal"
)


class FakeCredential:
    """Stands in for `DefaultAzureCredential`: a bearer token only this fake accepts."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("fake-token", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("fake-token", int(time.time()) + 3600)


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Cluster:
    resource: dict[str, Any]  # the ARM ComputeResource as stored
    state: str = "Creating"
    ready_at: float = 0.0  # when Creating/Deleting finishes
    nodes: dict[str, str] = field(default_factory=dict)  # node id → run id ("" when idle)
    idle_since: float | None = None

    @property
    def scale(self) -> dict[str, Any]:
        settings: dict[str, Any] = self.resource["properties"]["properties"]["scaleSettings"]
        return settings


@dataclass
class Job:
    resource: dict[str, Any]
    error: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        return str(self.resource["properties"]["status"])


def program_problem(props: dict[str, Any]) -> str:
    """Why a command job's code, command or environment is not of the spec's `CommandJob` ("" if they are)."""
    missing = [name for name in _COMMAND_JOB["required"] if name not in props]
    if missing:
        return f"CommandJob: {', '.join(missing)} required"
    for name, validator in _PROGRAM_FIELDS.items():
        wrong = next(validator.iter_errors(props.get(name)), None)
        if wrong:
            return f"{name}: {wrong.message}"
    return ""


def distribution_problem(distribution: Any) -> str:
    """Why a job's `distribution` is not one of the spec's `DistributionConfiguration` shapes ("" if it is)."""
    wrong = next(_DISTRIBUTION.iter_errors(distribution), None)
    return f"distribution: {wrong.message}" if wrong else ""


def _json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, body, headers or {})


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message, "details": [], "additionalInfo": []}})


def _seconds(iso_duration: str) -> int:
    """`PT2M`, `PT1H30M`, `PT90S` → seconds (what ARM stores scale-down times as)."""
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?", iso_duration)
    if not match:
        raise ValueError(f"not an ISO 8601 duration: {iso_duration}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return int(hours * 3600 + minutes * 60 + seconds)


class FakeAzureML:
    """One Azure ML workspace, its clusters, jobs and code assets, answering real SDK requests."""

    def __init__(self) -> None:
        self.clusters: dict[str, Cluster] = {}
        self.jobs: dict[str, Job] = {}
        self.code_versions: dict[tuple[str, str], dict[str, Any]] = {}
        self.environments: dict[str, list[str]] = {"aztrain-trainer": ["1", "2"]}
        self.models: dict[tuple[str, str], dict[str, Any]] = {}  # (name, version) → resource, in creation order
        #: Dedicated vCPU limits per family (`SIZES` names), and the regional totals per tier.
        self.quotas: dict[str, int] = {family: 64 for _, family in SIZES.values()}
        self.regional_limits: dict[str, int] = {"Dedicated": 256, "LowPriority": 256}
        self.uploads: dict[str, bytes] = {}  # blob path → bytes, for the code snapshot
        self.blob_metadata: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self.replies: list[tuple[str, str, Reply]] = []  # (method, URL, reply) in arrival order
        self.unhandled: list[str] = []
        self.now = 0.0  # fake seconds since the workspace was created
        self._epoch = datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.RLock()  # the SDK's LRO pollers call from their own threads
        self._routes: list[tuple[str, str, re.Pattern[str], Callable[..., Reply]]] = [
            ("GET", ARM, re.compile(f"^{WS_PATH}$"), self._get_workspace),
            ("GET", ARM, re.compile(f"^{WS_PATH}/computes/(?P<name>[^/]+)$"), self._get_compute),
            ("PUT", ARM, re.compile(f"^{WS_PATH}/computes/(?P<name>[^/]+)$"), self._put_compute),
            ("DELETE", ARM, re.compile(f"^{WS_PATH}/computes/(?P<name>[^/]+)$"), self._delete_compute),
            ("POST", ARM, re.compile(f"^{WS_PATH}/computes/(?P<name>[^/]+)/listNodes$"), self._list_nodes),
            (
                "GET",
                ARM,
                re.compile(
                    f"^/subscriptions/{SUBSCRIPTION}/providers/{PROVIDER}/locations/{LOCATION}"
                    r"/computeOperationsStatus/(?P<op>[^/]+)$"
                ),
                self._compute_operation,
            ),
            (
                "GET",
                ARM,
                re.compile(f"^/subscriptions/{SUBSCRIPTION}/providers/{PROVIDER}/locations/{LOCATION}/usages$"),
                self._usages,
            ),
            ("GET", ARM, re.compile(f"^{WS_PATH}/jobs/(?P<name>[^/]+)$"), self._get_job),
            ("PUT", ARM, re.compile(f"^{WS_PATH}/jobs/(?P<name>[^/]+)$"), self._put_job),
            ("POST", ARM, re.compile(f"^{WS_PATH}/jobs/(?P<name>[^/]+)/cancel$"), self._cancel_job),
            ("GET", ARM, re.compile(f"^{WS_PATH}/codes/(?P<name>[^/]+)/versions$"), self._list_code_versions),
            ("PUT", ARM, re.compile(f"^{WS_PATH}/codes/(?P<name>[^/]+)/versions/(?P<v>[^/]+)$"), self._put_code),
            (
                "POST",
                ARM,
                re.compile(f"^{WS_PATH}/codes/(?P<name>[^/]+)/versions/(?P<v>[^/]+)/startPendingUpload$"),
                self._start_pending_upload,
            ),
            ("GET", ARM, re.compile(f"^{WS_PATH}/environments/(?P<name>[^/]+)/versions$"), self._list_env_versions),
            ("GET", ARM, re.compile(f"^{WS_PATH}/models/(?P<name>[^/]+)/versions$"), self._list_model_versions),
            ("GET", ARM, re.compile(f"^{WS_PATH}/models/(?P<name>[^/]+)/versions/(?P<v>[^/]+)$"), self._get_model),
            ("PUT", ARM, re.compile(f"^{WS_PATH}/models/(?P<name>[^/]+)/versions/(?P<v>[^/]+)$"), self._put_model),
            ("GET", REGION_API, re.compile("^/discovery$"), self._discovery),
            ("GET", REGION_API, re.compile(f"^/history/v1.0{WS_PATH}/runs/(?P<name>[^/]+)$"), self._get_run),
            ("PUT", f"{STORAGE_ACCOUNT}.blob.core.windows.net", re.compile(r"^/(?P<blob>.+)$"), self._put_blob),
            ("HEAD", f"{STORAGE_ACCOUNT}.blob.core.windows.net", re.compile(r"^/(?P<blob>.+)$"), self._head_blob),
        ]

    # ------------------------------------------------------------------ transport
    def session(self) -> requests.Session:
        """A `requests` session whose HTTPS traffic this fake answers."""
        session = requests.Session()
        session.mount("https://", _Adapter(self))
        return session

    def transport(self) -> Any:
        """A real azure-core `RequestsTransport` on `session()`: pass it as `MLClient(transport=...)`."""
        from azure.core.pipeline.transport import RequestsTransport

        return RequestsTransport(session=self.session(), session_owner=False)

    @contextmanager
    def patch_blob_uploads(self) -> Iterator[None]:
        """Route the blob clients the SDK builds for code uploads through this fake (it gives them no transport)."""
        from azure.storage.blob import ContainerClient

        original = ContainerClient.from_container_url
        transport = self.transport()

        def from_container_url(url: str, **kwargs: Any) -> Any:
            return original(url, transport=transport, **kwargs)

        setattr(ContainerClient, "from_container_url", staticmethod(from_container_url))  # noqa: B010
        try:
            yield
        finally:
            setattr(ContainerClient, "from_container_url", original)  # noqa: B010

    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Reply:
        reply = self._answer(method, url, headers, body)
        with self._lock:
            self.replies.append((method, url, reply))
        return reply

    def _answer(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(url)
        with self._lock:
            self.requests.append((method, parts.path))
            if parts.hostname in (ARM, REGION_API) and not self._authorized(parts.path, headers):
                return _error(401, "AuthenticationFailed", "missing or wrong bearer token")
            for verb, host, pattern, handler in self._routes:
                match = pattern.match(parts.path)
                if verb == method and host == parts.hostname and match:
                    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    is_json = body and headers.get("Content-Type", "").startswith("application/json")
                    document = json.loads(body) if is_json else body
                    return handler(query=query, body=document, headers=headers, **match.groupdict())
            self.unhandled.append(f"{method} {url}")
            return _error(400, "FakeUnhandled", f"the fake does not serve {method} {parts.hostname}{parts.path}")

    @staticmethod
    def _authorized(path: str, headers: dict[str, str]) -> bool:
        """Workspace discovery is public; everything else needs the (fake) credential's bearer token."""
        return path == "/discovery" or headers.get("Authorization") == "Bearer fake-token"

    # ------------------------------------------------------------ test controls
    def advance(self, seconds: float) -> None:
        """Let time pass: provisioning and deletions finish, idle nodes are released."""
        with self._lock:
            self.now += seconds
            for name, cluster in list(self.clusters.items()):
                if cluster.state == "Creating" and self.now >= cluster.ready_at:
                    cluster.state = "Succeeded"
                if cluster.state == "Deleting" and self.now >= cluster.ready_at:
                    del self.clusters[name]
                    continue
                idle_for = _seconds(cluster.scale["nodeIdleTimeBeforeScaleDown"])
                if cluster.idle_since is not None and self.now - cluster.idle_since >= idle_for:
                    idle = [node for node, run in cluster.nodes.items() if not run]
                    for node in idle[cluster.scale["minNodeCount"] :]:
                        del cluster.nodes[node]
                    cluster.idle_since = None
            for job in self.jobs.values():
                if job.status == "CancelRequested":
                    self._set(job, "Canceled")

    def set_status(self, name: str, status: str) -> None:
        """Azure ML moves the job on (the status text is stored exactly as given)."""
        with self._lock:
            self._set(self.jobs[name], status)

    def fail(self, name: str, code: str, message: str, *, inner: str = "") -> None:
        """The job fails; run history records the error (with an inner error code when given)."""
        with self._lock:
            job = self.jobs[name]
            job.error = {"code": code, "message": message, "inner": inner}
            self._set(job, "Failed")

    def preempt(self, name: str) -> None:
        """Azure takes the job's low-priority nodes back: the nodes vanish and the job fails."""
        with self._lock:
            job = self.jobs[name]
            cluster = self.clusters.get(self._cluster_of(job))  # None: serverless, whose nodes go with it
            for node in [n for n, run in cluster.nodes.items() if run == name] if cluster else []:
                del cluster.nodes[node]
            job.error = {"code": "UserError", "message": PREEMPTION_MESSAGE}  # innerError null: the message says it
            self._set(job, "Failed")

    def add_model(self, name: str, version: str, uri: str) -> None:
        """Test control: a model version someone registered in the workspace outside aztrain."""
        with self._lock:
            self._put_model(name=name, v=version, body={"properties": {"modelType": "custom_model", "modelUri": uri}})

    def calls(self, method: str, fragment: str) -> int:
        """How many requests of this method had `fragment` in their path."""
        return sum(1 for m, path in self.requests if m == method and fragment in path)

    def replies_to(self, method: str, fragment: str) -> list[Reply]:
        """What the fake answered to requests of this method with `fragment` in their path, in order."""
        return [reply for m, url, reply in self.replies if m == method and fragment in urlsplit(url).path]

    # -------------------------------------------------------------- internals
    def _time(self, at: float | None = None) -> str:
        return (self._epoch + timedelta(seconds=self.now if at is None else at)).isoformat().replace("+00:00", "Z")

    def _cluster_of(self, job: Job) -> str:
        """The job's cluster, or '' for a serverless job."""
        return str(job.resource["properties"].get("computeId") or "").rsplit("/", 1)[-1]

    def _set(self, job: Job, status: str) -> None:
        job.resource["properties"]["status"] = status
        cluster = self.clusters.get(self._cluster_of(job))
        if cluster is None:
            return
        name = job.resource["name"]
        if status.lower() in BUSY and name not in cluster.nodes.values():
            self._allocate(cluster, name, int(job.resource["properties"]["resources"]["instanceCount"]))
        if status.lower() in FINAL:
            for node, run in cluster.nodes.items():
                if run == name:
                    cluster.nodes[node] = ""
            if cluster.nodes and not any(cluster.nodes.values()):
                cluster.idle_since = self.now

    def _allocate(self, cluster: Cluster, run: str, count: int) -> None:
        idle = [n for n, r in cluster.nodes.items() if not r][:count]
        for node in idle:
            cluster.nodes[node] = run
        for _ in range(count - len(idle)):
            cluster.nodes[f"tvmps_{uuid.uuid4().hex[:24]}_d"] = run
        cluster.idle_since = None

    # ---------------------------------------------------------------- workspace
    def _get_workspace(self, **_: Any) -> Reply:
        return _json_reply(
            200,
            {
                "id": WS_PATH,
                "name": WORKSPACE,
                "type": f"{PROVIDER}/workspaces",
                "location": LOCATION,
                "identity": {"type": "SystemAssigned", "principalId": str(uuid.UUID(int=7)), "tenantId": TENANT},
                "sku": {"name": "Basic", "tier": "Basic"},
                "properties": {
                    "friendlyName": WORKSPACE,
                    "workspaceId": str(uuid.UUID(int=42)),
                    "provisioningState": "Succeeded",
                    "storageAccount": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
                    f"/providers/Microsoft.Storage/storageAccounts/{STORAGE_ACCOUNT}",
                    "discoveryUrl": f"https://{REGION_API}/discovery",
                    "mlFlowTrackingUri": f"azureml://{REGION_API}/mlflow/v1.0{WS_PATH}",
                    "publicNetworkAccess": "Enabled",
                },
            },
        )

    def _discovery(self, **_: Any) -> Reply:
        base = f"https://{REGION_API}"
        return _json_reply(
            200, {key: base for key in ("api", "catalog", "experimentation", "history", "modelmanagement")}
        )

    # ----------------------------------------------------------------- computes
    def _compute_resource(self, name: str) -> dict[str, Any]:
        cluster = self.clusters[name]
        resource: dict[str, Any] = json.loads(json.dumps(cluster.resource))  # a copy: the reply must not alias state
        running = sum(1 for run in cluster.nodes.values() if run)
        props = resource["properties"]
        props.update(provisioningState=cluster.state, modifiedOn=self._time(), provisioningErrors=None)
        props["properties"].update(
            allocationState="Steady",
            allocationStateTransitionTime=self._time(),
            currentNodeCount=len(cluster.nodes),
            targetNodeCount=len(cluster.nodes),
            nodeStateCounts={
                "idleNodeCount": len(cluster.nodes) - running,
                "runningNodeCount": running,
                "preparingNodeCount": 0,
                "unusableNodeCount": 0,
                "leavingNodeCount": 0,
                "preemptedNodeCount": 0,
            },
            errors=None,
        )
        return resource

    def _get_compute(self, name: str, **_: Any) -> Reply:
        if name not in self.clusters:
            return _error(404, "ResourceNotFound", f"Compute {name} not found in workspace {WORKSPACE}")
        return _json_reply(200, self._compute_resource(name))

    def _put_compute(self, name: str, body: dict[str, Any], **_: Any) -> Reply:
        props = body["properties"]
        if props.get("computeType") != "AmlCompute" or "vmSize" not in props.get("properties", {}):
            return _error(400, "BadRequest", "the fake creates AmlCompute clusters with a vmSize only")
        existing = self.clusters.get(name)
        if existing and existing.state == "Deleting":
            return _error(409, "Conflict", f"Compute {name} is being deleted")
        resource: dict[str, Any] = {
            "id": f"{WS_PATH}/computes/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/computes",
            "location": body.get("location") or LOCATION,
            "tags": body.get("tags") or {},
            "properties": {
                **props,
                "computeLocation": body.get("location") or LOCATION,
                "createdOn": existing.resource["properties"]["createdOn"] if existing else self._time(),
                "isAttachedCompute": False,
            },
        }
        if body.get("identity"):  # ARM fills in who each assigned identity is
            resource["identity"] = {
                "type": body["identity"]["type"],
                "userAssignedIdentities": {
                    rid: {
                        "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, rid)),
                        "clientId": str(uuid.uuid5(uuid.NAMESPACE_DNS, rid)),
                    }
                    for rid in body["identity"].get("userAssignedIdentities", {})
                },
            }
        if existing:  # an update: scale settings change in place, the VM size and tier cannot
            old = existing.resource["properties"]["properties"]
            new = resource["properties"]["properties"]
            if (old["vmSize"], old.get("vmPriority")) != (new["vmSize"], new.get("vmPriority")):
                return _error(400, "BadRequest", "vmSize and vmPriority cannot be changed on an existing cluster")
            existing.resource = resource
            return _json_reply(200, self._compute_resource(name))
        self.clusters[name] = Cluster(resource=resource, state="Creating", ready_at=self.now + PROVISION_SECONDS)
        return self._accepted(201, name, self._compute_resource(name))

    def _delete_compute(self, name: str, query: dict[str, str], **_: Any) -> Reply:
        cluster = self.clusters.get(name)
        if cluster is None:
            return Reply(204)
        if query.get("underlyingResourceAction") != "Delete":
            return _error(400, "BadRequest", "underlyingResourceAction must be Delete or Detach")
        cluster.state, cluster.ready_at = "Deleting", self.now + DELETE_SECONDS
        cluster.nodes.clear()
        return self._accepted(202, name, None)

    def _accepted(self, status: int, name: str, body: Any) -> Reply:
        operation = (
            f"https://{ARM}/subscriptions/{SUBSCRIPTION}/providers/{PROVIDER}/locations/{LOCATION}"
            f"/computeOperationsStatus/{name}:{self.now}?api-version=2023-04-01"
        )
        return _json_reply(
            status, body, {"Azure-AsyncOperation": operation, "Location": operation, "Retry-After": "15"}
        )

    def _compute_operation(self, op: str, **_: Any) -> Reply:
        name = op.split(":", 1)[0]
        cluster = self.clusters.get(name)
        done = cluster is None or cluster.state in ("Succeeded", "Failed")
        status = "Succeeded" if done else "InProgress"
        return _json_reply(200, {"name": op, "status": status, "startTime": self._time(0)})

    def _list_nodes(self, name: str, **_: Any) -> Reply:
        if name not in self.clusters:
            return _error(404, "ResourceNotFound", f"Compute {name} not found in workspace {WORKSPACE}")
        nodes = [
            {
                "nodeId": node,
                "privateIpAddress": f"10.0.0.{4 + i}",
                "publicIpAddress": f"20.50.0.{4 + i}",
                "port": 50000 + i,
                "nodeState": "running" if run else "idle",
                "runId": run or None,
            }
            for i, (node, run) in enumerate(self.clusters[name].nodes.items())
        ]
        return _json_reply(200, {"nodes": nodes, "nextLink": None})

    # --------------------------------------------------------------------- jobs
    def _get_job(self, name: str, **_: Any) -> Reply:
        if name not in self.jobs:
            return _error(404, "UserError", f"Not found: job {name}")
        return _json_reply(200, self.jobs[name].resource)

    def _put_job(self, name: str, body: dict[str, Any], **_: Any) -> Reply:
        props = body["properties"]
        problem = self._job_problem(props)
        if problem:
            return _error(400, "UserError", problem)
        if name in self.jobs:
            return _error(409, "UserError", f"A job with name {name} already exists and cannot be modified")
        resource = {
            "id": f"{WS_PATH}/jobs/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/jobs",
            "systemData": {
                "createdAt": self._time(),
                "createdBy": "aztrain-func",
                "createdByType": "Application",
            },
            "properties": {
                **props,
                "status": "NotStarted",
                "services": {
                    "Studio": {
                        "jobServiceType": "Studio",
                        "endpoint": f"https://ml.azure.com/runs/{name}?wsid={WS_PATH}",
                    },
                    "Tracking": {
                        "jobServiceType": "Tracking",
                        "endpoint": f"azureml://{REGION_API}/mlflow/v1.0{WS_PATH}?",
                    },
                },
            },
        }
        self.jobs[name] = Job(resource=resource)
        return _json_reply(201, resource)

    def _job_problem(self, props: dict[str, Any]) -> str:
        """What the service would refuse: unknown compute, code or environment; a distribution not of the spec."""
        if props.get("jobType") != "Command":
            return "the fake runs command jobs only"
        if problem := program_problem(props):
            return problem
        if not props.get("computeId"):
            problem = self._serverless_problem(props)
            if problem:
                return problem
        elif (compute := str(props["computeId"]).rsplit("/", 1)[-1]) not in self.clusters or self.clusters[
            compute
        ].state == "Deleting":
            return f"Compute {compute} not found or being deleted"
        code = re.search(r"/codes/([^/]+)/versions/([^/]+)$", str(props.get("codeId", "")))
        if not code or (code.group(1), code.group(2)) not in self.code_versions:
            return f"code asset {props.get('codeId')} not found"
        env = re.search(r"/environments/([^/]+)/versions/([^/]+)$", str(props.get("environmentId", "")))
        if not env or env.group(2) not in self.environments.get(env.group(1), []):
            return f"environment {props.get('environmentId')} not found"
        distribution = props.get("distribution")  # none: a single-process job
        return "" if distribution is None else distribution_problem(distribution)

    @staticmethod
    def _serverless_problem(props: dict[str, Any]) -> str:
        """A serverless job: resources and queue settings as the spec defines them, a known size, a managed identity."""
        for field_name, definition in (("resources", "JobResourceConfiguration"), ("queueSettings", "QueueSettings")):
            schema = {"$defs": SCHEMAS["$defs"], "$ref": f"#/$defs/mfe-2024-01-01-preview.{definition}"}
            errors = [e.message for e in Draft202012Validator(schema).iter_errors(props.get(field_name) or {})]
            if errors:
                return f"{field_name}: {'; '.join(errors)}"
        size = (props.get("resources") or {}).get("instanceType")
        if size not in SIZES:
            return f"serverless compute needs resources.instanceType, a VM size it offers; got {size!r}"
        if (props.get("identity") or {}).get("identityType") != "Managed":
            return "serverless jobs here run as the workspace's user-assigned managed identity"
        return ""

    def _usages(self, **_: Any) -> Reply:
        """The usage lines (Usages_List): the regional totals, then each family's dedicated and low-priority one."""
        used = self._vcpus_in_use()
        sub = f"/subscriptions/{SUBSCRIPTION}"

        def line(id_: str, kind: str, current: int, limit: int, name: str) -> dict[str, Any]:
            value = {"value": name, "localizedValue": name}
            return {"id": id_, "type": kind, "currentValue": current, "limit": limit, "name": value, "unit": "Count"}

        lines = [
            line(
                f"{sub}/usages",
                f"{PROVIDER}/{kind}Cores/usages",
                sum(used[tier].values()),
                self.regional_limits[tier],
                name,
            )
            for tier, kind, name in (
                ("Dedicated", "dedicated", REGIONAL["Dedicated"]),
                ("LowPriority", "lowPriority", REGIONAL["LowPriority"]),
            )
        ]
        for family, limit in self.quotas.items():
            for tier, family_limit in (("Dedicated", limit), ("LowPriority", -1)):
                name = f"{family} Cluster {tier} vCPUs"
                lines.append(
                    line(
                        f"{sub}/usages/{name.replace(' ', '_')}",
                        f"{PROVIDER}/vmFamily/usages",
                        used[tier].get(family, 0),
                        family_limit,
                        name,
                    )
                )
        return _json_reply(200, {"value": lines, "nextLink": None})

    def _vcpus_in_use(self) -> dict[str, dict[str, int]]:
        """vCPUs held per tier and family: every cluster node, and the nodes of serverless jobs at work."""
        used: dict[str, dict[str, int]] = {"Dedicated": {}, "LowPriority": {}}
        held = [
            (
                c.resource["properties"]["properties"]["vmSize"],
                c.resource["properties"]["properties"].get("vmPriority"),
                len(c.nodes),
            )
            for c in self.clusters.values()
        ]
        for job in self.jobs.values():
            props = job.resource["properties"]
            if not props.get("computeId") and job.status.lower() in BUSY:
                tier = "LowPriority" if (props.get("queueSettings") or {}).get("jobTier") == "Spot" else "Dedicated"
                held.append((props["resources"]["instanceType"], tier, int(props["resources"]["instanceCount"])))
        for size, tier, nodes in held:
            vcpus, family = SIZES.get(size, (0, ""))
            bucket = used["LowPriority" if tier == "LowPriority" else "Dedicated"]
            bucket[family] = bucket.get(family, 0) + vcpus * nodes
        return used

    def _cancel_job(self, name: str, **_: Any) -> Reply:
        job = self.jobs.get(name)
        if job is None:
            return _error(404, "UserError", f"Not found: job {name}")
        if job.status.lower() not in CANCELLABLE:
            return _error(400, "UserError", f"Job {name} is {job.status} and cannot be canceled")
        self._set(job, "CancelRequested")
        location = f"https://{ARM}{WS_PATH}/jobs/{name}/operationResults/{uuid.uuid4()}?api-version=2024-01-01-preview"
        return Reply(202, None, {"Location": location, "Retry-After": "15"})

    def _get_run(self, name: str, **_: Any) -> Reply:
        """Run history's view of a job: the status and, once failed, the error users see in the studio."""
        job = self.jobs.get(name)
        if job is None:
            return _error(404, "UserError", f"Run {name} not found")
        run: dict[str, Any] = {
            "runId": name,
            "runUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
            "status": job.status,
            "experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, job.resource["properties"]["experimentName"])),
            "runType": "azureml.scriptrun",
            "target": self._cluster_of(job),
            "tags": job.resource["properties"].get("tags") or {},
            "createdUtc": job.resource["systemData"]["createdAt"],
        }
        if job.error:
            inner = {"code": job.error["inner"]} if job.error.get("inner") else None
            run["error"] = {
                "error": {"code": job.error["code"], "message": job.error["message"], "innerError": inner},
                "time": self._time(),
            }
        return _json_reply(200, run)

    # -------------------------------------------------------------- code assets
    def _code_resource(self, name: str, version: str) -> dict[str, Any]:
        return {
            "id": f"{WS_PATH}/codes/{name}/versions/{version}",
            "name": version,
            "type": f"{PROVIDER}/workspaces/codes/versions",
            "properties": self.code_versions[(name, version)],
        }

    def _list_code_versions(self, name: str, query: dict[str, str], **_: Any) -> Reply:
        wanted = query.get("hash")
        found = [
            self._code_resource(n, v)
            for (n, v), props in self.code_versions.items()
            if n == name and (wanted is None or props.get("contentHash") == wanted)
        ]
        return _json_reply(200, {"value": found, "nextLink": None})

    def _put_code(self, name: str, v: str, body: dict[str, Any], **_: Any) -> Reply:
        uri = str(body["properties"].get("codeUri", ""))
        path = urlsplit(uri).path.lstrip("/")
        if not any(blob.startswith(path) for blob in self.uploads):
            return _error(400, "UserError", f"codeUri {uri} holds no uploaded files")
        self.code_versions[(name, v)] = {**body["properties"], "provisioningState": "Succeeded"}
        return _json_reply(201, self._code_resource(name, v))

    def _start_pending_upload(self, name: str, v: str, **_: Any) -> Reply:
        container = f"https://{STORAGE_ACCOUNT}.blob.core.windows.net/azureml-blobstore-{uuid.UUID(int=42)}"
        sas = "sv=2021-08-06&se=2026-01-02T00%3A00%3A00Z&sr=c&sp=rcwl&sig=fake"
        return _json_reply(
            200,
            {
                "blobReferenceForConsumption": {
                    "blobUri": container,
                    "storageAccountArmId": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
                    f"/providers/Microsoft.Storage/storageAccounts/{STORAGE_ACCOUNT}",
                    "credential": {"credentialType": "SAS", "sasUri": f"{container}?{sas}"},
                },
                "pendingUploadId": str(uuid.uuid4()),
                "pendingUploadType": "TemporaryBlobReference",
            },
        )

    def _list_env_versions(self, name: str, **_: Any) -> Reply:
        versions = [
            {
                "id": f"{WS_PATH}/environments/{name}/versions/{v}",
                "name": v,
                "type": f"{PROVIDER}/workspaces/environments/versions",
                "properties": {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04"},
            }
            for v in reversed(self.environments.get(name, []))  # newest first, as `$orderBy=createdtime desc` asks
        ]
        return _json_reply(200, {"value": versions, "nextLink": None})

    # -------------------------------------------------------------------- models
    def _list_model_versions(self, name: str, query: dict[str, str], **_: Any) -> Reply:
        found = [resource for (n, _v), resource in self.models.items() if n == name]
        found.reverse()  # newest first, as `$orderBy=createdtime desc` asks
        return _json_reply(200, {"value": found[: int(query.get("$top", len(found)))], "nextLink": None})

    def _get_model(self, name: str, v: str, **_: Any) -> Reply:
        if (name, v) not in self.models:
            return _error(404, "UserError", f"Model container with name: {name} version: {v} not found")
        return _json_reply(200, self.models[(name, v)])

    def _put_model(self, name: str, v: str, body: dict[str, Any], **_: Any) -> Reply:
        props = body["properties"]
        existing = self.models.get((name, v))
        if existing is not None and existing["properties"]["modelUri"] != props.get("modelUri"):
            return _error(400, "UserError", "Asset paths cannot be updated.")
        resource = {
            "id": f"{WS_PATH}/models/{name}/versions/{v}",
            "name": v,
            "type": f"{PROVIDER}/workspaces/models/versions",
            "systemData": existing["systemData"] if existing else {"createdAt": self._time()},
            # The service answers `flavors: {}` for models without any (the SDK reads it as a dict).
            "properties": {**props, "flavors": props.get("flavors") or {}, "provisioningState": "Succeeded"},
        }
        self.models[(name, v)] = resource
        return _json_reply(200 if existing else 201, resource)

    # --------------------------------------------------------------------- blobs
    def _put_blob(self, blob: str, body: Any, query: dict[str, str], headers: dict[str, str], **_: Any) -> Reply:
        metadata = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ms-meta-")}
        if query.get("comp") == "metadata":  # the SDK's "upload confirmed" marker on the indicator file
            if blob not in self.uploads:
                return Reply(404, None, {"x-ms-error-code": "BlobNotFound"})
            self.blob_metadata[blob] = metadata
            return Reply(200, None, {"ETag": '"0x2"'})
        self.uploads[blob] = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.blob_metadata[blob] = metadata
        return Reply(201, None, {"ETag": '"0x1"', "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"})

    def _head_blob(self, blob: str, **_: Any) -> Reply:
        if blob not in self.uploads:
            return Reply(404, None, {"x-ms-error-code": "BlobNotFound"})
        return Reply(
            200,
            None,
            {
                "Content-Length": str(len(self.uploads[blob])),
                "x-ms-blob-type": "BlockBlob",
                "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT",
                "ETag": '"0x2"',
                **self.blob_metadata.get(blob, {}),
            },
        )


class _Adapter(HTTPAdapter):
    """The socket layer under `requests`: every HTTPS request goes to the fake instead of the network."""

    def __init__(self, fake: FakeAzureML) -> None:
        super().__init__()
        self._fake = fake

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        headers = {key: str(value) for key, value in request.headers.items()}
        reply = self._fake.handle(request.method or "GET", request.url or "", headers, _bytes(request.body))
        if reply.body is None or isinstance(reply.body, bytes):
            content, reply_headers = reply.body or b"", dict(reply.headers)
        else:
            content = json.dumps(reply.body).encode()
            reply_headers = {"Content-Type": "application/json; charset=utf-8", **reply.headers}
        reply_headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        reply_headers["Content-Length"] = str(len(content))
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(content),
            headers=reply_headers,
            status=reply.status,
            reason=HTTPStatus(reply.status).phrase,
            preload_content=False,
            decode_content=False,
        )
        return self.build_response(request, raw)


def _bytes(body: Any) -> bytes:
    """A request body as bytes, whether azure-core sent bytes, text or a stream (blob uploads)."""
    if hasattr(body, "read"):
        body = body.read()
    return body.encode() if isinstance(body, str) else bytes(body or b"")
