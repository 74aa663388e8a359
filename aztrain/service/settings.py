"""Typed settings, read once from the environment (and `local.settings.json` locally).

The Functions host exposes app settings as environment variables; the dev host
loads `local.settings.json` the same way Core Tools does, so one code path
serves Azure and this machine.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from aztrain.domain.errors import ConfigError
from aztrain.service.backends import BACKENDS

#: Azurite's well-known development account (public, documented by Microsoft).
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)

#: The dev host's Event Grid topic (devhost/topic.py) and its well-known key (public, for this machine only).
LOCAL_EVENTS_TOPIC = "http://127.0.0.1:7081/api/events"
LOCAL_EVENTS_TOPIC_KEY = "aztrain-local-topic-key"

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Each attempt adds about three transitions to a run's outbox, which must fit one Table Storage string
#: property (32K characters) while the events topic is down; tests/unit/test_outbox_bound.py checks the worst case.
MAX_PREEMPTION_ATTEMPTS_BOUND = 5


@dataclass(frozen=True)
class Settings:
    """Everything the control plane is configured with. Defaults suit local development."""

    #: Connection string (local / tests) — in Azure leave empty and set `storage_account`
    #: so the managed identity is used instead of a key.
    storage_connection_string: str = ""
    storage_account: str = ""
    jobs_container: str = "jobs"
    manifests_prefix: str = "manifests/"
    runs_container: str = "runs"
    #: Containers whose uploads count as data arrival (Event Grid data subscription).
    data_containers: tuple[str, ...] = ("datasets",)
    table_prefix: str = ""
    backend: str = "local"
    #: Local backend: where job working folders and the simulated cluster live.
    local_state_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".aztrain" / "local")
    local_provision_seconds: float = 2.0
    local_max_slots: int = 2
    #: Local backend: nodes of each simulated cluster; jobs beyond them wait in the queue.
    local_cluster_nodes: int = 2
    #: Local backend: the simulated quota, JSON of VM family → vCPUs (`adapters/compute/local/quota.py`); empty: none.
    local_quota: str = ""
    local_python: str = ""
    max_manifest_bytes: int = 64 * 1024
    #: Azure ML backend (`AZTRAIN_BACKEND=azureml`): the workspace, and the registered environment jobs run in.
    aml_subscription_id: str = ""
    aml_resource_group: str = ""
    aml_workspace: str = ""
    aml_environment: str = "aztrain-trainer@latest"
    #: Resource id of the user-assigned identity clusters run as (their jobs read and write datastores with it).
    aml_compute_identity_id: str = ""
    #: JSON adding or overriding compute profiles (`aztrain.domain.profiles`); empty: the defaults.
    compute_profiles: str = ""
    #: The profiles users may run on (empty: every profile); infra/ sets what it provisions.
    allowed_profiles: tuple[str, ...] = ()
    #: Attempts a run preempted on low-priority nodes gets before it fails.
    max_preemption_attempts: int = 3
    #: Outbound run events: the Event Grid custom topic (empty: events are recorded and not sent),
    #: its access key (empty: the managed identity, with the EventGrid Data Sender role), and `source`.
    events_topic_endpoint: str = ""
    events_topic_key: str = ""
    events_source: str = "/aztrain"
    #: The Azure region whose prices a run's cost uses (`aztrain/domain/prices.json`, docs/teams.md).
    region: str = "eastus"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from `AZTRAIN_*` variables (and `AzureWebJobsStorage`)."""
        env = dict(os.environ if environ is None else environ)
        conn = env.get("AZTRAIN_STORAGE_CONNECTION_STRING") or env.get("AzureWebJobsStorage", "")
        if conn == "UseDevelopmentStorage=true":
            conn = AZURITE_CONNECTION_STRING
        account = env.get("AZTRAIN_STORAGE_ACCOUNT", "")
        if not conn and not account:
            conn = AZURITE_CONNECTION_STRING
        backend = env.get("AZTRAIN_BACKEND", "local")
        if backend not in BACKENDS:
            raise ConfigError(
                f"AZTRAIN_BACKEND={backend!r} is not supported; use one of: {', '.join(map(repr, BACKENDS))}",
                setting="AZTRAIN_BACKEND",
            )
        defaults = cls()
        return cls(
            storage_connection_string=conn,
            storage_account=account,
            jobs_container=env.get("AZTRAIN_JOBS_CONTAINER", defaults.jobs_container),
            manifests_prefix=env.get("AZTRAIN_MANIFESTS_PREFIX", defaults.manifests_prefix),
            runs_container=env.get("AZTRAIN_RUNS_CONTAINER", defaults.runs_container),
            data_containers=tuple(
                c.strip()
                for c in env.get("AZTRAIN_DATA_CONTAINERS", ",".join(defaults.data_containers)).split(",")
                if c.strip()
            ),
            table_prefix=env.get("AZTRAIN_TABLE_PREFIX", defaults.table_prefix),
            backend=backend,
            local_state_dir=Path(env.get("AZTRAIN_LOCAL_STATE_DIR", str(defaults.local_state_dir))),
            local_provision_seconds=_number(env, "AZTRAIN_LOCAL_PROVISION_SECONDS", defaults.local_provision_seconds),
            local_max_slots=int(_number(env, "AZTRAIN_LOCAL_MAX_SLOTS", defaults.local_max_slots)),
            local_cluster_nodes=int(_number(env, "AZTRAIN_LOCAL_CLUSTER_NODES", defaults.local_cluster_nodes)),
            local_quota=env.get("AZTRAIN_LOCAL_QUOTA", ""),
            local_python=env.get("AZTRAIN_LOCAL_PYTHON", ""),
            max_manifest_bytes=int(_number(env, "AZTRAIN_MAX_MANIFEST_BYTES", defaults.max_manifest_bytes)),
            aml_subscription_id=env.get("AZTRAIN_AML_SUBSCRIPTION_ID", ""),
            aml_resource_group=env.get("AZTRAIN_AML_RESOURCE_GROUP", ""),
            aml_workspace=env.get("AZTRAIN_AML_WORKSPACE", ""),
            aml_environment=env.get("AZTRAIN_AML_ENVIRONMENT") or defaults.aml_environment,
            aml_compute_identity_id=env.get("AZTRAIN_AML_COMPUTE_IDENTITY_ID", ""),
            compute_profiles=env.get("AZTRAIN_COMPUTE_PROFILES", ""),
            allowed_profiles=tuple(p.strip() for p in env.get("AZTRAIN_ALLOWED_PROFILES", "").split(",") if p.strip()),
            max_preemption_attempts=_preemption_attempts(env, defaults.max_preemption_attempts),
            events_topic_endpoint=env.get("AZTRAIN_EVENTS_TOPIC_ENDPOINT", ""),
            events_topic_key=env.get("AZTRAIN_EVENTS_TOPIC_KEY", ""),
            events_source=env.get("AZTRAIN_EVENTS_SOURCE") or defaults.events_source,
            region=env.get("AZTRAIN_REGION") or defaults.region,
        )


def _preemption_attempts(env: dict[str, str], default: int) -> int:
    attempts = _number(env, "AZTRAIN_MAX_PREEMPTION_ATTEMPTS", default)
    if attempts != int(attempts) or not 1 <= attempts <= MAX_PREEMPTION_ATTEMPTS_BOUND:
        raise ConfigError(
            f"AZTRAIN_MAX_PREEMPTION_ATTEMPTS must be a whole number from 1 to {MAX_PREEMPTION_ATTEMPTS_BOUND}"
            f" (every attempt adds to the run's stored outbox), got {env['AZTRAIN_MAX_PREEMPTION_ATTEMPTS']!r}",
            setting="AZTRAIN_MAX_PREEMPTION_ATTEMPTS",
        )
    return int(attempts)


def _number(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}", setting=name) from None


def load_local_settings(path: Path) -> None:
    """Copy `Values` of a Core Tools style `local.settings.json` into the environment.

    Variables already set win, as with Core Tools.
    """
    if not path.is_file():
        return
    values = json.loads(path.read_text()).get("Values", {})
    for key, value in values.items():
        os.environ.setdefault(key, str(value))
