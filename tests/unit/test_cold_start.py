"""Cold start: importing and indexing the function app loads no storage SDK, no Azure ML, no aiohttp.

Every module on that path is paid for by each cold start of the Functions worker, before the first
event; the SDKs that only handling an event needs are imported when the first one arrives.
"""

from __future__ import annotations

from tests.unit.test_devhost_packaging import loaded_modules

#: `import function_app`, then indexed the way the dev host (like the Python worker) does: every trigger read.
INDEX_THE_APP = """
import function_app
from devhost.functions_index import FunctionIndex
index = FunctionIndex.from_app(function_app.app)
assert index.http and index.event_grid and index.timers, index
"""

#: Imported on first use only: the storage SDKs (the blob SDK pulls in aiohttp and requests), the
#: storage adapters that import them, the Azure credential, and the Azure ML adapter with its SDK.
OFF_THE_COLD_PATH = (
    "aiohttp",
    "requests",
    "azure.storage.blob",
    "azure.data.tables",
    "azure.ai.ml",
    "azure.identity",
    "aztrain.adapters.storage.blobs",
    "aztrain.adapters.storage.tables",
    "aztrain.adapters.compute.azureml",
)


def _is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_indexing_the_function_app_imports_no_sdk_that_only_an_event_needs() -> None:
    modules = loaded_modules(INDEX_THE_APP)
    assert "function_app" in modules
    loaded = sorted({package for package in OFF_THE_COLD_PATH for name in modules if _is_under(name, package)})
    assert loaded == []
