"""What infra/ (Bicep, read as text: no Bicep CLI here) must agree on with the Python code, the azd
postdeploy hook that creates the Event Grid subscriptions (run against a fake `az`), and the
checkov security scan of infra/."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from aztrain.adapters.storage.tables import TABLES
from aztrain.domain.layout import BACKEND_JOB_PREFIX
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.profiles import CLUSTER_PREFIX, DEFAULT_PROFILES, GPUS_PER_NODE, load_profiles, retirement_notice
from aztrain.service.settings import PROJECT_ROOT, Settings
from devhost.localstack import subscriptions
from functions.blob_queue import BLOB_CREATED, BLOB_EVENTS_QUEUE, MAX_DEQUEUE_COUNT, POISON_QUEUE
from functions.events import RUN_STATUS_CHANGED
from tests.apps import fresh_function_app

INFRA = PROJECT_ROOT / "infra"

#: Every built-in role the Bicep may assign (docs/deploy.md says why each is needed).
BUILTIN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "f6c7c914-8db3-469d-8ca1-694a8f32e121": "AzureML Data Scientist",
    "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815": "AzureML Compute Operator",
    "f1a07417-d97a-45cb-824c-7a7467783830": "Managed Identity Operator",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "EventGrid Data Sender",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
}


def bicep(name: str) -> str:
    return (INFRA / name).read_text()


def var(text: str, name: str) -> str | list[str]:
    """The literal value of `var <name> = 'x'` or `var <name> = ['a', 'b']`."""
    match = re.search(rf"^var {name} = (.+)$", text, re.MULTILINE)
    assert match, f"var {name} not found"
    value = match.group(1).strip()
    strings = re.findall(r"'([^']*)'", value)
    return strings if value.startswith("[") else strings[0]


def expand(template: str, scope: dict[str, str | list[str]]) -> str:
    """Bicep string interpolation: `${name}` replaced from scope."""
    return re.sub(r"\$\{(\w+)\}", lambda m: str(scope[m.group(1)]), template)


def test_container_names_are_the_settings_defaults() -> None:
    main, defaults = bicep("main.bicep"), Settings()
    assert var(main, "jobsContainer") == defaults.jobs_container
    assert var(main, "manifestsPrefix") == defaults.manifests_prefix
    assert var(main, "runsContainer") == defaults.runs_container
    assert var(main, "dataContainers") == list(defaults.data_containers)


def test_event_subscriptions_match_the_dev_host_mirror() -> None:
    """Names and filters equal devhost.localstack.subscriptions(), which the dev host delivers by."""
    main, events = bicep("main.bicep"), bicep("events.bicep")
    for param in ("jobsContainer", "manifestsPrefix", "dataContainers"):
        assert f"{param}: {{ value: {param} }}\n" in main, f"main.bicep must pass its {param} to events.bicep"
    values = {
        "blobsOf": var(events, "blobsOf"),
        "jobsContainer": var(main, "jobsContainer"),
        "manifestsPrefix": var(main, "manifestsPrefix"),
    }
    deployed: dict[str, tuple[str, tuple[str, ...]]] = {}
    for block in events.split("\nresource ")[1:]:
        if "/eventSubscriptions@" not in block or "subjectBeginsWith" not in block:
            continue  # not a blob subscription (the workspace's run-status one)
        name = re.search(r"name: '([^']+)'", block)
        begins = re.search(r"subjectBeginsWith: '([^']+)'", block)
        assert name and begins
        ends = tuple(var(events, "manifestSuffixes")) if "values: manifestSuffixes" in block else ()
        for container in var(main, "dataContainers") if "for container in dataContainers" in block else [""]:
            scope = {**values, "container": container}
            deployed[expand(name.group(1), scope)] = (expand(begins.group(1), scope), ends)
    mirrored = {s.name: (s.subject_begins_with, s.subject_ends_with) for s in subscriptions(Settings())}
    assert deployed == mirrored


def test_blob_events_go_to_the_queue_the_trigger_reads_and_status_events_to_a_registered_function() -> None:
    events, main = bicep("events.bicep"), bicep("main.bicep")
    targets = re.findall(r"resourceId: '\$\{functionApp\.id\}/functions/(\w+)'", events)
    functions = {f.get_function_name(): f for f in fresh_function_app().get_functions()}
    assert targets == ["on_run_status_changed"] and set(targets) <= set(functions)
    queues = {name: f.get_trigger().get_dict_repr().get("queueName") for name, f in functions.items()}
    assert queues["on_blob_event"] == BLOB_EVENTS_QUEUE == var(main, "blobEventsQueue")
    assert queues["on_blob_event_poison"] == POISON_QUEUE == f"{BLOB_EVENTS_QUEUE}-poison"
    assert "poisonQueue = '${blobEventsQueue}-poison'" in main and "queues: [blobEventsQueue, poisonQueue]" in main
    assert "blobEventsQueue: { value: blobEventsQueue }" in main  # the events.bicep parameter
    # Both blob subscriptions: a StorageQueue endpoint, written with the topic's identity, never expiring.
    assert events.count("deliveryWithResourceIdentity: queueDelivery") == 2
    assert "endpointType: 'StorageQueue'" in events and "queueMessageTimeToLiveInSeconds: -1" in events
    assert "identity: { type: 'SystemAssigned' }\n  destination:" in events
    rbac = bicep("modules/rbac.bicep")
    assert "scope: blobEvents" in rbac and "roles.storageQueueDataMessageSender" in rbac
    assert "for queue in [blobEvents, poisonEvents]" in rbac and "roles.storageQueueDataContributor" in rbac
    assert events.count(f"includedEventTypes: ['{BLOB_CREATED}']") == 2
    assert events.count(f"includedEventTypes: ['{RUN_STATUS_CHANGED}']") == 1
    assert f"values: ['{BACKEND_JOB_PREFIX}']" in events  # only aztrain's own Azure ML jobs
    assert events.count("maxEventsPerBatch: 1\n") == 1
    queue_settings = json.loads((PROJECT_ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queue_settings["maxDequeueCount"] == MAX_DEQUEUE_COUNT  # the last attempt records its dead letter
    assert queue_settings["messageEncoding"] == "base64"  # as Event Grid writes the messages
    # Created after the code is deployed (postdeploy hook), never by `azd provision`: no second provision.
    assert "eventSubscriptions@" not in bicep("modules/eventgrid.bicep")
    assert not re.search(r"deploy(Event)?Subscriptions", "\n".join(p.read_text() for p in INFRA.rglob("*.bicep")))
    assert "DEPLOY_EVENT_SUBSCRIPTIONS" not in (INFRA / "main.parameters.json").read_text()
    assert "module events" not in bicep("main.bicep") and "events.bicep" not in re.findall(
        r"^module \w+ '([^']+)'", bicep("main.bicep"), re.MULTILINE
    )


def test_default_gpu_cluster_is_the_default_profile_and_scales_to_zero() -> None:
    assert var(bicep("main.bicep"), "gpuClusterName") == CLUSTER_PREFIX + ComputeSpec().profile
    aml = bicep("modules/aml.bicep")
    assert "computeType: 'AmlCompute'" in aml
    assert re.search(r"minNodeCount: 0\b", aml)
    assert "nodeIdleTimeBeforeScaleDown: 'PT120S'" in aml


def test_users_may_run_only_on_what_the_deployment_provisions() -> None:
    main = bicep("main.bicep")
    assert "AZTRAIN_ALLOWED_PROFILES: allowedProfiles" in main
    assert re.search(r"^param allowedProfiles string = 'gpu-small'$", main, re.MULTILINE)
    assert var(main, "gpuClusterName") == CLUSTER_PREFIX + "gpu-small"  # the profile infra/ creates a cluster for
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["allowedProfiles"]["value"] == "${ALLOWED_PROFILES=gpu-small}"
    example = yaml.safe_load((PROJECT_ROOT / "examples" / "digits.yaml").read_text())["compute"]
    assert (example["profile"], example["priority"]) == ("gpu-small", "dedicated")  # what infra/ provisions


def test_tables_are_the_table_store_tables() -> None:
    assert sorted(var(bicep("main.bicep"), "tables")) == sorted(TABLES)


def test_the_deploy_guide_lists_every_table() -> None:
    """docs/deploy.md's resource tree names the tables a deployment creates: kept true by this test."""
    guide = (PROJECT_ROOT / "docs" / "deploy.md").read_text()
    listed = re.search(r"tables: ([\w,\s]+?)\n\s*(?:monitoring\.bicep|\S+\.bicep)", guide)
    assert listed, "docs/deploy.md: the storage.bicep line lists 'tables: ...'"
    assert sorted(t.strip() for t in listed[1].split(",")) == sorted(TABLES)


def test_previous_blob_versions_are_deleted_by_a_lifecycle_rule() -> None:
    """Versioning without a lifecycle rule keeps every overwritten checkpoint, log and manifest forever."""
    storage = bicep("modules/storage.bicep")
    assert "isVersioningEnabled: true" in storage
    assert "Microsoft.Storage/storageAccounts/managementPolicies@" in storage
    rule = r"version: \{ delete: \{ daysAfterCreationGreaterThan: previousVersionRetentionDays \} \}"
    assert re.search(rule, storage)
    assert "previousVersionRetentionDays: previousVersionRetentionDays" in bicep("main.bicep")


def test_app_settings_are_read_by_the_app_and_carry_no_secret() -> None:
    main, app = bicep("main.bicep"), bicep("modules/functionapp.bicep")
    settings_source = (PROJECT_ROOT / "aztrain" / "service" / "settings.py").read_text()
    names = re.findall(r"^\s*(AZTRAIN_\w+):", main, re.MULTILINE)
    assert "AZTRAIN_STORAGE_ACCOUNT" in names
    # AZTRAIN_AML_* are reserved for the Azure ML backend; every other one must be read.
    unread = [n for n in names if f'"{n}"' not in settings_source and not n.startswith("AZTRAIN_AML_")]
    assert unread == []
    assert "AzureWebJobsStorage__accountName:" in app  # identity-based host storage
    # Flex Consumption rejects these: the runtime is set in functionAppConfig.
    assert not re.search(r"^\s*FUNCTIONS_(WORKER_RUNTIME|EXTENSION_VERSION):", app, re.MULTILINE)
    everything = "\n".join(p.read_text() for p in INFRA.rglob("*.bicep"))
    assert "listKeys(" not in everything and "AccountKey=" not in everything
    assert "allowSharedKeyAccess: false" in bicep("modules/storage.bicep")


def test_each_deployment_names_its_events_by_its_own_resource_path() -> None:
    """CloudEvents: source + id identify an event, so two deployments must not share a source."""
    main = bicep("main.bicep")
    assert "AZTRAIN_EVENTS_SOURCE: resourceId('Microsoft.Web/sites', functionAppName)" in main
    assert "    name: functionAppName\n" in main


def test_role_assignments_use_documented_builtin_roles() -> None:
    docs = (PROJECT_ROOT / "docs" / "deploy.md").read_text()
    rbac = bicep("modules/rbac.bicep")
    everything = "\n".join(p.read_text() for p in INFRA.rglob("*.bicep"))
    used = set(re.findall(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'", everything))
    assert used and used <= set(BUILTIN_ROLES)
    for guid in used:
        assert guid in docs, f"{BUILTIN_ROLES[guid]} ({guid}) is assigned but not explained in docs/deploy.md"
    assignments = rbac.split("roleAssignments@2022-04-01'")[1:]
    assert assignments and all(re.search(r"^\s*name: guid\(", a, re.MULTILINE) for a in assignments)
    assert "Microsoft.Authorization/roleAssignments" not in everything.replace(rbac, "")


def test_azd_wiring() -> None:
    main = bicep("main.bicep")
    declared = dict(re.findall(r"^param (\w+) \w+( = )?", main, re.MULTILINE))
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(declared)
    assert {p for p, default in declared.items() if not default} <= set(given)
    assert given["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert given["location"]["value"] == "${AZURE_LOCATION}"
    for module in re.findall(r"^module \w+ '([^']+)'", main, re.MULTILINE):
        assert (INFRA / module).is_file(), module
    service = yaml.safe_load((PROJECT_ROOT / "azure.yaml").read_text())["services"]["api"]
    assert service == {"project": ".", "language": "python", "host": "function"}
    assert "'azd-service-name': 'api'" in bicep("modules/functionapp.bicep")


# ---------------------------------------------------------------- the default GPU size


def param_default(text: str, name: str) -> str:
    match = re.search(rf"^param {name} \w+ = '?([^'\n]+)'?$", text, re.MULTILINE)
    assert match, f"param {name} has no default"
    return match.group(1)


def test_default_gpu_size_is_current_and_the_gpu_small_profile() -> None:
    """The deployed `gpu-small` cluster is the profile's size, one Azure has not retired, with GPUs aztrain knows."""
    main = bicep("main.bicep")
    size = param_default(main, "gpuVmSize")
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert given["gpuVmSize"]["value"] == "${GPU_VM_SIZE=" + size + "}"
    assert retirement_notice(size) == ""
    gpu_small = next(p for p in DEFAULT_PROFILES if p.name == ComputeSpec().profile)
    assert size == gpu_small.vm_size == "Standard_NC4as_T4_v3"
    # What main.bicep passes as AZTRAIN_COMPUTE_PROFILES loads: a known size needs no gpus_per_node.
    deployed = {"vm_size": size, "max_nodes": int(param_default(main, "gpuMaxNodes")), "tier": "dedicated"}
    profile = load_profiles(json.dumps({"gpu-small": deployed}))["gpu-small"]
    assert profile.gpus_per_node == GPUS_PER_NODE[size] == 1
    assert "gpuCountPerNode > 0 ? { gpus_per_node: gpuCountPerNode } : {}" in main  # for sizes it does not know
    code = "\n".join(re.sub(r"//.*", "", p.read_text()) for p in INFRA.rglob("*.bicep")) + json.dumps(given)
    assert not [s for s in re.findall(r"Standard_N\w+", code) if retirement_notice(s)]


# ---------------------------------------------------------------- Flex Consumption


def test_flex_consumption_scale_limits_are_bounded_as_azure_documents() -> None:
    """Maximum instances 40..1000 and 512 (the default), 2048 or 4096 MB per instance, in the module and at the top."""
    app, main = bicep("modules/functionapp.bicep"), bicep("main.bicep")
    for text, count, memory in ((app, "maximumInstanceCount", "instanceMemoryMB"),
                                (main, "functionMaximumInstanceCount", "functionInstanceMemoryMB")):  # fmt: skip
        assert re.search(rf"@minValue\(40\)\n@maxValue\(1000\)\n(@description\(.*\)\n)?param {count} int = 40\n", text)
        assert re.search(rf"@allowed\(\[512, 2048, 4096\]\)\n(@description\(.*\)\n)?param {memory} int = 512\n", text)
    assert "maximumInstanceCount: functionMaximumInstanceCount\n" in main
    assert "instanceMemoryMB: functionInstanceMemoryMB\n" in main
    assert "maximumInstanceCount: maximumInstanceCount\n" in app and "instanceMemoryMB: instanceMemoryMB\n" in app


# ---------------------------------------------------------------- one-command deploy: the postdeploy hook

HOOK_SH = INFRA / "hooks" / "postdeploy.sh"
HOOK_PS1 = INFRA / "hooks" / "postdeploy.ps1"


HOOK_PROVISION_SH = INFRA / "hooks" / "postprovision.sh"
HOOK_PROVISION_PS1 = INFRA / "hooks" / "postprovision.ps1"


def test_azd_runs_both_hooks_on_both_shells() -> None:
    hooks = yaml.safe_load((PROJECT_ROOT / "azure.yaml").read_text())["hooks"]
    assert set(hooks) == {"postprovision", "postdeploy"}
    for name, sh, ps1 in (("postdeploy", HOOK_SH, HOOK_PS1), ("postprovision", HOOK_PROVISION_SH, HOOK_PROVISION_PS1)):
        posix, windows = hooks[name]["posix"], hooks[name]["windows"]
        assert posix["shell"] == "sh" and (PROJECT_ROOT / posix["run"]).resolve() == sh
        assert windows["shell"] == "pwsh" and (PROJECT_ROOT / windows["run"]).resolve() == ps1
        assert posix["continueOnError"] is False and windows["continueOnError"] is False
        assert os.access(sh, os.X_OK)


def test_the_hook_deploys_exactly_the_parameters_events_bicep_declares() -> None:
    """main.bicep's AZTRAIN_EVENTS_PARAMETERS output is a parameters file for events.bicep, with every parameter."""
    main, events = bicep("main.bicep"), bicep("events.bicep")
    output = main[main.index("output AZTRAIN_EVENTS_PARAMETERS string = string({") :]
    given = re.findall(r"^    (\w+): \{ value: ", output, re.MULTILINE)
    declared = re.findall(r"^param (\w+) ", events, re.MULTILINE)
    assert given and sorted(given) == sorted(declared)
    assert "contentVersion: '1.0.0.0'" in output and "$schema" not in output  # azd's .env would expand `$schema`
    for hook in (HOOK_SH, HOOK_PS1):
        text = hook.read_text()
        assert "AZTRAIN_EVENTS_PARAMETERS" in text and "events.bicep" in text, hook
        assert "az deployment group create" in text, hook


def test_the_hook_waits_for_the_functions_the_subscriptions_deliver_to() -> None:
    targets = re.findall(r"resourceId: '\$\{functionApp\.id\}/functions/(\w+)'", bicep("events.bicep"))
    sh = re.search(r'^functions="([^"]+)"$', HOOK_SH.read_text(), re.MULTILINE)
    ps1 = re.search(r"^\$functions = @\(([^)]+)\)$", HOOK_PS1.read_text(), re.MULTILINE)
    assert sh and ps1
    assert sh[1].split() == re.findall(r"'(\w+)'", ps1[1]) == list(dict.fromkeys(targets))


FAKE_AZ = r"""#!/bin/sh
# A stand-in for the Azure CLI: logs each call, plays back the behaviour the test asks for.
echo "$*" >> "$FAKE_LOG"
case "$1 $2" in
  "functionapp function")
    n=$(cat "$FAKE_STATE/shows" 2>/dev/null || echo 0); echo $((n + 1)) > "$FAKE_STATE/shows"
    [ "$n" -ge "${FAKE_SHOW_FAILURES:-0}" ] || exit 3
    exit 0 ;;
  "deployment group")
    n=$(cat "$FAKE_STATE/deploys" 2>/dev/null || echo 0); echo $((n + 1)) > "$FAKE_STATE/deploys"
    prev=""
    for arg in "$@"; do
      [ "$prev" = "--parameters" ] && cp "${arg#@}" "$FAKE_STATE/parameters.json"
      prev=$arg
    done
    [ "$n" -ge "${FAKE_DEPLOY_FAILURES:-0}" ] || exit 1
    exit 0 ;;
  "extension show") [ "${FAKE_ML_EXTENSION:-yes}" = yes ] || exit 1; exit 0 ;;
  "ml environment")
    case "$3" in
      show) [ "${FAKE_ENVIRONMENT_REGISTERED:-no}" = yes ] || exit 1; exit 0 ;;
      create) exit "${FAKE_CREATE_STATUS:-0}" ;;
    esac ;;
esac
exit 2
"""

FAKE_AZD = r"""#!/bin/sh
# `azd env get-value NAME`: as azd does for a key the environment lacks, fail.
echo "ERROR: key '$4' not found in the environment values" >&2
exit 1
"""


def run_hook(
    tmp_path: Path, hook: Path = HOOK_SH, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str], Path]:
    """Run a posix hook (postdeploy.sh by default) under dash (POSIX sh) with a fake az/azd on PATH."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, script in (("az", FAKE_AZ), ("azd", FAKE_AZD)):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "az.log"
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "FAKE_STATE": str(state),
        "AZTRAIN_HOOK_POLL_SECONDS": "0",
        "TMPDIR": str(tmp_path),
        **env,
    }
    shell = shutil.which("dash") or "sh"
    result = subprocess.run([shell, str(hook)], env=environment, capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls, state


PARAMETERS = json.dumps(
    {
        "contentVersion": "1.0.0.0",
        "parameters": {"functionAppName": {"value": "aztrain-func-x"}, "dataContainers": {"value": ["datasets"]}},
    }
)
AZD_ENV = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-00000000beef",
    "AZURE_RESOURCE_GROUP": "rg-aztrain",
    "AZURE_FUNCTION_APP_NAME": "aztrain-func-x",
    "AZTRAIN_EVENTS_PARAMETERS": PARAMETERS,
}


def test_every_hook_names_azds_subscription_on_every_az_call() -> None:
    for hook in (HOOK_SH, HOOK_PS1, HOOK_PROVISION_SH, HOOK_PROVISION_PS1):
        calls = [
            line for line in hook.read_text().splitlines() if re.search(r"^\s*(until |if )?(! )?az (?!extension)", line)
        ]
        assert calls and all("--subscription" in line or "$where" in line for line in calls), hook


PROVISIONED = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-00000000beef",
    "AZURE_RESOURCE_GROUP": "rg-aztrain",
    "AZURE_ML_WORKSPACE_NAME": "mlw-aztrain",
    "AZURE_ML_ENVIRONMENT_NAME": "aztrain-trainer",
}


def test_postprovision_registers_the_trainer_environment_from_its_build_context(tmp_path: Path) -> None:
    result, calls, _ = run_hook(tmp_path, HOOK_PROVISION_SH, **PROVISIONED)
    assert result.returncode == 0, result.stderr
    create = next(c for c in calls if c.startswith("ml environment create"))
    where = (
        "--subscription 00000000-0000-0000-0000-00000000beef --resource-group rg-aztrain --workspace-name mlw-aztrain"
    )
    assert where in create and "--name aztrain-trainer" in create and "--dockerfile-path Dockerfile" in create
    assert f"--build-context {HOOK_PROVISION_SH.parent}/../../trainer/environment " in create
    assert (HOOK_PROVISION_SH.parent / "../../trainer/environment/Dockerfile").is_file()
    assert "registered" in result.stdout


def test_postprovision_leaves_a_registered_environment_alone(tmp_path: Path) -> None:
    result, calls, _ = run_hook(tmp_path, HOOK_PROVISION_SH, FAKE_ENVIRONMENT_REGISTERED="yes", **PROVISIONED)
    assert result.returncode == 0 and not [c for c in calls if c.startswith("ml environment create")]


@pytest.mark.parametrize(
    ("env", "says"),
    [({"FAKE_ML_EXTENSION": "no"}, "az extension add --name ml"), ({"FAKE_CREATE_STATUS": "1"}, "could not register")],
)
def test_postprovision_fails_loudly_naming_the_step(tmp_path: Path, env: dict[str, str], says: str) -> None:
    result, _, _ = run_hook(tmp_path, HOOK_PROVISION_SH, **env, **PROVISIONED)
    assert result.returncode == 1 and says in result.stderr


def test_the_app_uses_the_environment_the_hook_registers() -> None:
    from aztrain.service.settings import Settings

    main = bicep("main.bicep")
    name = var(main, "trainerEnvironment")
    assert "AZTRAIN_AML_ENVIRONMENT: '${trainerEnvironment}@latest'" in main
    assert "output AZURE_ML_ENVIRONMENT_NAME string = trainerEnvironment" in main
    assert Settings().aml_environment == f"{name}@latest"


def test_postdeploy_hook_refuses_to_run_without_azds_subscription(tmp_path: Path) -> None:
    env = {k: v for k, v in AZD_ENV.items() if k != "AZURE_SUBSCRIPTION_ID"}
    result, calls, _ = run_hook(tmp_path, **env)
    assert result.returncode == 1 and calls == []
    assert "AZURE_SUBSCRIPTION_ID is not set" in result.stderr


def test_postdeploy_hook_waits_for_the_functions_then_deploys_the_subscriptions(tmp_path: Path) -> None:
    result, calls, state = run_hook(tmp_path, FAKE_SHOW_FAILURES="2", **AZD_ENV)
    assert result.returncode == 0, result.stderr
    shows = [c for c in calls if c.startswith("functionapp function show")]
    deploys = [c for c in calls if c.startswith("deployment group create")]
    assert len(shows) == 3 and all("--function-name on_run_status_changed" in c for c in shows)  # two misses, then it
    assert all("--resource-group rg-aztrain --name aztrain-func-x" in c for c in shows)
    # az may be signed in to another subscription than azd: every call names azd's.
    assert all(f"--subscription {AZD_ENV['AZURE_SUBSCRIPTION_ID']} " in c for c in calls), calls
    assert len(deploys) == 1 and calls[-1] == deploys[0]  # only once the functions are listed
    assert "--resource-group rg-aztrain --name aztrain-events" in deploys[0]
    assert f"--template-file {HOOK_SH.parent}/../events.bicep " in deploys[0]
    assert json.loads((state / "parameters.json").read_text()) == json.loads(PARAMETERS)
    assert not list(tmp_path.glob("aztrain-events.*")), "the parameters file is removed"
    assert "Event Grid subscriptions to aztrain-func-x are in place" in result.stdout


def test_postdeploy_hook_retries_the_deployment_and_then_fails_loudly(tmp_path: Path) -> None:
    result, calls, _ = run_hook(tmp_path, FAKE_DEPLOY_FAILURES="5", **AZD_ENV)
    assert result.returncode == 1
    assert len([c for c in calls if c.startswith("deployment group create")]) == 3
    assert "could not create the Event Grid subscriptions" in result.stderr


def test_postdeploy_hook_stops_when_the_functions_never_appear(tmp_path: Path) -> None:
    result, calls, _ = run_hook(tmp_path, FAKE_SHOW_FAILURES="1000", AZTRAIN_HOOK_WAIT_SECONDS="0", **AZD_ENV)
    assert result.returncode == 1
    assert "does not list function on_run_status_changed" in result.stderr
    assert not [c for c in calls if c.startswith("deployment group")]


def test_postdeploy_hook_needs_a_provisioned_environment(tmp_path: Path) -> None:
    result, calls, _ = run_hook(tmp_path, AZURE_RESOURCE_GROUP="rg-aztrain")  # nothing else in env, azd has none
    assert result.returncode == 1
    assert "run 'azd provision' (or 'azd up') first" in result.stderr
    assert calls == []


# ---------------------------------------------------------------- RBAC


def role_assignments(text: str) -> list[tuple[str, str, str]]:
    """(resource name, role key, principal param) of each role assignment."""
    found = []
    for match in re.finditer(
        r"resource (\w+) 'Microsoft\.Authorization/roleAssignments@[^']+' = (.*?)\n[}\]]\n",
        text,
        re.S,
    ):
        name, body = match.groups()
        role = re.search(r"roleDefinitions', roles\.(\w+)\)", body)
        principal = re.search(r"principalId: (\w+)", body)
        assert role and principal, name
        found.append((name, role[1], principal[1]))
    return found


def test_every_role_assignment_says_why() -> None:
    """Each grant in rbac.bicep has its reason in a comment right above it."""
    rbac = bicep("modules/rbac.bicep")
    lines = rbac.splitlines()
    starts = [
        i for i, line in enumerate(lines) if re.match(r"resource \w+ 'Microsoft\.Authorization/roleAssignments@", line)
    ]
    assert len(starts) == len(role_assignments(rbac)) >= 10
    for i in starts:
        assert lines[i - 1].startswith("// "), f"{lines[i].split()[1]}: say why in a comment above it"


def test_function_app_has_what_host_storage_and_the_app_need_and_no_more() -> None:
    """Blob Data Owner + Table Data Contributor on its storage account (Azure's host-storage table); queue
    rights only on the two queues its triggers read."""
    grants = {(role, principal) for _, role, principal in role_assignments(bicep("modules/rbac.bicep"))}
    function_roles = {role for role, principal in grants if principal == "functionPrincipalId"}
    assert function_roles == {
        "storageBlobDataOwner",  # host storage: "Storage Blob Data Owner" (functions-reference, host storage)
        "storageTableDataContributor",  # the app's tables and the host's diagnostic events
        "monitoringMetricsPublisher",
        "azureMLDataScientist",
        "azureMLComputeOperator",
        "managedIdentityOperator",
        "eventGridDataSender",  # outbound run events to the custom topic
        "storageQueueDataContributor",  # the blob-events queue and its poison queue, nothing else
    }
    rbac = bicep("modules/rbac.bicep")
    assert "scope: queue\n" in rbac and "for queue in [blobEvents, poisonEvents]" in rbac
    assert "functions-reference#connecting-to-host-storage-with-an-identity" in rbac  # the source, cited


def test_the_workspace_carries_the_training_identity_serverless_jobs_run_as() -> None:
    aml, rbac = bicep("modules/aml.bicep"), bicep("modules/rbac.bicep")
    workspace = aml[aml.index("resource workspace ") : aml.index("resource trainingIdentity ")]
    assert "type: 'SystemAssigned,UserAssigned'" in workspace and "'${trainingIdentity.id}': {}" in workspace
    # ...the identity that already reads the data and writes the runs (the trainer's needs).
    assert ("trainingWritesRuns", "storageBlobDataContributor", "trainingPrincipalId") in role_assignments(rbac)


def test_workspace_identity_reads_the_datastores_for_studio() -> None:
    rbac, aml = bicep("modules/rbac.bicep"), bicep("modules/aml.bicep")
    assert "serviceDataAccessAuthIdentity: 'WorkspaceSystemAssignedIdentity'" in aml
    assert "output workspacePrincipalId string = workspace.identity.principalId" in aml
    assert ("workspaceReadsDatastores", "storageBlobDataReader", "workspacePrincipalId") in role_assignments(rbac)
    assert "var datastoreContainers = concat([runsContainer], dataContainers)" in rbac
    # ...the same containers aml.bicep registers as datastores.
    assert "datastoreContainers: concat([runsContainer], dataContainers)" in bicep("main.bicep")
    assert "workspacePrincipalId: aml.outputs.workspacePrincipalId" in bicep("main.bicep")


# ---------------------------------------------------------------- the security scan (checkov)

SKIP = re.compile(r"checkov:skip=([^:\s]*)(?::(.*))?")
#: The checks infra/ suppresses, with the reason next to the resource (docs/deploy.md lists them).
SUPPRESSED = {
    "CKV_AZURE_17",  # client certificates: would turn away Event Grid and the CLI
    "CKV_AZURE_35",  # storage default Deny: no VNet / private endpoints in this template
    "CKV_AZURE_43",  # storage name: checkov cannot resolve the module parameter
    "CKV_AZURE_109",  # Key Vault firewall: Azure ML reaches it publicly without private endpoints
    "CKV_AZURE_189",  # Key Vault public network access: as CKV_AZURE_109
    "CKV_AZURE_193",  # Event Grid topic public access: the Function App publishes without a VNet
    "CKV_AZURE_212",  # minimum instances: Flex scales to zero on purpose
    "CKV_AZURE_213",  # health check: /api/health needs a function key; Flex instances are ephemeral
    "CKV_AZURE_222",  # Function App public access: Event Grid pushes to it
    "CKV_AZURE_225",  # plan zone redundancy: region-dependent, and nothing is lost without it
    "CKV_AZURE_243",  # ML workspace private endpoint: no VNet in this template
}


def checkov() -> str:
    found = Path(sys.executable).with_name("checkov")
    if found.exists():
        return str(found)
    path = shutil.which("checkov")
    if not path:
        pytest.fail("checkov is not installed: pip install -e '.[dev]' (it is in the dev extra)")
    return path


@pytest.fixture(scope="module")
def scan() -> dict[str, Any]:
    """checkov's JSON report for infra/ (bicep). --skip-download: no network, only the built-in checks."""
    command = [checkov(), "--directory", str(INFRA), "--framework", "bicep", "--output", "json", "--skip-download"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_no_failed_check(scan: dict[str, Any]) -> None:
    results, summary = scan["results"], scan["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in results["failed_checks"]
    ]
    assert failed == [], "checkov failed checks; fix them, or skip one in the Bicep with its reason:\n" + "\n".join(
        failed
    )
    assert results.get("parsing_errors", []) == [], "checkov could not parse (so did not scan) these files"
    scanned = {c["file_path"].lstrip("/") for c in results["passed_checks"] + results["skipped_checks"]}
    assert {"modules/functionapp.bicep", "modules/storage.bicep", "modules/aml.bicep"} <= scanned
    assert summary["passed"] > 0


def test_checkov_skips_all_carry_their_reason(scan: dict[str, Any]) -> None:
    skipped = scan["results"]["skipped_checks"]
    assert skipped, "the skips in infra/ should show in the report"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.strip()) >= 40 and reason != "No comment provided", check["check_id"]


def test_every_checkov_skip_in_the_bicep_has_a_written_reason() -> None:
    """`// checkov:skip=CKV_X: why` - one check per comment, a real sentence after the colon."""
    skips = []
    for path in sorted(INFRA.rglob("*.bicep")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if match := SKIP.search(line):
                where = f"{path.relative_to(INFRA)}:{number}"
                assert line.strip().startswith("// checkov:skip="), f"{where}: the skip must be its own comment line"
                assert re.fullmatch(r"CKV2?_[A-Z]+_\d+", match[1]), f"{where}: one check id per skip"
                assert match[2] and len(match[2].strip()) >= 40, f"{where}: {match[1]} needs its reason"
                skips.append(match[1])
    # The suppressed checks, each decided in docs/deploy.md (Security scan); a new one is a decision too.
    assert sorted(set(skips)) == sorted(SUPPRESSED), "update SUPPRESSED and docs/deploy.md with the new skip"
    assert "CKV_" not in bicep("main.bicep")


# ---------------------------------------------------------------- the azure-functions pin


def _requirements() -> dict[str, Requirement]:
    """requirements.txt, by lower-case name."""
    lines = [line.strip() for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()]
    found = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {r.name.lower(): r for r in found}


def _declared() -> dict[str, Requirement]:
    """pyproject.toml's dependencies, by lower-case name."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {r.name.lower(): r for r in map(Requirement, project)}


def _pinned(requirement: Requirement) -> str | None:
    """The one version `==` pins, or None for anything looser."""
    specs = list(requirement.specifier)
    return specs[0].version if len(specs) == 1 and specs[0].operator == "==" else None


def test_the_deployment_installs_exactly_the_tested_releases() -> None:
    """Flex's remote build installs requirements.txt on every deploy: a range would ship untested releases."""
    requirements, declared = _requirements(), _declared()
    assert [str(r) for r in requirements.values() if _pinned(r) is None] == [], "pin exactly what the suite tests"
    for name, requirement in requirements.items():
        assert declared[name].specifier.contains(_pinned(requirement) or ""), f"{requirement} is outside pyproject.toml"


def test_azure_ai_ml_is_pinned_to_the_release_its_private_call_was_checked_against() -> None:
    from aztrain.adapters.compute.azureml import RUN_HISTORY_SDK_VERSION

    assert _pinned(_requirements()["azure-ai-ml"]) == _pinned(_declared()["azure-ai-ml"]) == RUN_HISTORY_SDK_VERSION


def test_azure_functions_stays_below_2() -> None:
    """2.x requires Python 3.13; the app runs 3.11 (functionapp.bicep)."""
    assert SpecifierSet("<2").contains(_pinned(_requirements()["azure-functions"]) or "2")
    assert "version: '3.11'" in bicep("modules/functionapp.bicep")
