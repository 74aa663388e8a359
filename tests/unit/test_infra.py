"""What infra/ (Bicep, read as text: no Bicep CLI here) must agree on with the Python code."""

from __future__ import annotations

import json
import re

import yaml

import function_app
from aztrain.adapters.tables import TABLES
from aztrain.manifest import ComputeSpec
from aztrain.profiles import CLUSTER_PREFIX
from aztrain.service import BACKEND_JOB_PREFIX
from aztrain.settings import PROJECT_ROOT, Settings
from devhost.localstack import subscriptions
from functions.events import BLOB_CREATED, RUN_STATUS_CHANGED

INFRA = PROJECT_ROOT / "infra"

#: Every built-in role the Bicep may assign (docs/deploy.md says why each is needed).
BUILTIN_ROLES = {
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "f6c7c914-8db3-469d-8ca1-694a8f32e121": "AzureML Data Scientist",
    "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815": "AzureML Compute Operator",
    "f1a07417-d97a-45cb-824c-7a7467783830": "Managed Identity Operator",
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
    main, grid = bicep("main.bicep"), bicep("modules/eventgrid.bicep")
    for param in ("jobsContainer", "manifestsPrefix", "dataContainers"):
        assert f"{param}: {param}\n" in main, f"main.bicep must pass its {param} to the eventgrid module"
    values = {
        "blobsOf": var(grid, "blobsOf"),
        "jobsContainer": var(main, "jobsContainer"),
        "manifestsPrefix": var(main, "manifestsPrefix"),
    }
    deployed: dict[str, tuple[str, tuple[str, ...]]] = {}
    for block in grid.split("\nresource ")[1:]:
        if "/eventSubscriptions@" not in block or "subjectBeginsWith" not in block:
            continue  # not a blob subscription (the workspace's run-status one)
        name = re.search(r"name: '([^']+)'", block)
        begins = re.search(r"subjectBeginsWith: '([^']+)'", block)
        assert name and begins
        ends = tuple(var(grid, "manifestSuffixes")) if "values: manifestSuffixes" in block else ()
        for container in var(main, "dataContainers") if "for container in dataContainers" in block else [""]:
            scope = {**values, "container": container}
            deployed[expand(name.group(1), scope)] = (expand(begins.group(1), scope), ends)
    mirrored = {s.name: (s.subject_begins_with, s.subject_ends_with) for s in subscriptions(Settings())}
    assert deployed == mirrored


def test_subscriptions_deliver_events_one_at_a_time_to_registered_functions() -> None:
    grid = bicep("modules/eventgrid.bicep")
    targets = re.findall(r"resourceId: '\$\{functionAppId\}/functions/(\w+)'", grid)
    registered = [f.get_function_name() for f in function_app.app.get_functions()]
    assert targets == ["on_blob_created", "on_run_status_changed"]
    assert set(targets) <= set(registered)
    assert grid.count(f"includedEventTypes: ['{BLOB_CREATED}']") == 2
    assert grid.count(f"includedEventTypes: ['{RUN_STATUS_CHANGED}']") == 1
    assert f"values: ['{BACKEND_JOB_PREFIX}']" in grid  # only aztrain's own Azure ML jobs
    assert grid.count("maxEventsPerBatch: 1\n") == 2
    # Two-phase: the function must exist before Event Grid accepts a subscription to it.
    assert grid.count("= if (deploySubscriptions)") + grid.count(": if (deploySubscriptions)") == 3
    assert "param deployEventSubscriptions bool = false" in bicep("main.bicep")


def test_default_gpu_cluster_is_the_default_profile_and_scales_to_zero() -> None:
    assert var(bicep("main.bicep"), "gpuClusterName") == CLUSTER_PREFIX + ComputeSpec().profile
    aml = bicep("modules/aml.bicep")
    assert "computeType: 'AmlCompute'" in aml
    assert re.search(r"minNodeCount: 0\b", aml)
    assert "nodeIdleTimeBeforeScaleDown: 'PT120S'" in aml


def test_tables_are_the_table_store_tables() -> None:
    assert sorted(var(bicep("main.bicep"), "tables")) == sorted(TABLES)


def test_app_settings_are_read_by_the_app_and_carry_no_secret() -> None:
    main, app = bicep("main.bicep"), bicep("modules/functionapp.bicep")
    settings_source = (PROJECT_ROOT / "aztrain" / "settings.py").read_text()
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
