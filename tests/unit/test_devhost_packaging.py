"""The dev host is a development tool: never loaded by the Functions app, never deployed, apart from the core."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import devhost
from aztrain.service.settings import PROJECT_ROOT

#: The modules that wire aztrain's own stack on top of the host (its stack, its demo, its local users);
#: the rest know nothing of aztrain.
AZTRAIN_WIRING = {"devhost.localstack", "devhost.demo", "devhost.identity"}


def loaded_modules(code: str) -> list[str]:
    """The names in `sys.modules` after running `code` in a fresh interpreter at the project root."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    names: list[str] = json.loads(out.stdout.splitlines()[-1])
    return names


def test_importing_function_app_loads_nothing_from_the_dev_host() -> None:
    modules = loaded_modules("import function_app")
    assert "function_app" in modules
    assert [name for name in modules if name == "devhost" or name.startswith("devhost.")] == []


def test_the_deployment_package_leaves_the_dev_host_out() -> None:
    ignored = (PROJECT_ROOT / ".funcignore").read_text().split("\n")
    assert "devhost/" in [line.strip() for line in ignored]


def test_the_host_modules_import_nothing_from_aztrain() -> None:
    host_modules = [
        f"devhost.{module.name}"
        for module in pkgutil.iter_modules(devhost.__path__)
        if f"devhost.{module.name}" not in AZTRAIN_WIRING
    ]
    assert "devhost.host" in host_modules
    modules = loaded_modules("\n".join(f"import {name}" for name in host_modules))
    assert [name for name in modules if name == "aztrain" or name.startswith("aztrain.")] == []
