"""Nothing runs through a shell, and no secret reaches a log line."""

from __future__ import annotations

import ast
import json
import logging
import uuid
from pathlib import Path

import pytest

from aztrain.cli.main import main
from aztrain.service.settings import AZURITE_CONNECTION_STRING, PROJECT_ROOT
from tests.integration.test_http_api import Api
from tests.reliability.conftest import drop_manifest, manifest, settle

#: Everything that runs in the product: the function app, the core, the dev host, the trainer, scripts.
FOLDERS = ["aztrain", "functions", "devhost", "trainer", "scripts", "bench"]
SHELLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}


def shell_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and (func.value.id, func.attr) in SHELLS
        ):
            found.append(f"{path}:{node.lineno} {func.value.id}.{func.attr}")
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append(f"{path}:{node.lineno} shell=")
    return found


def test_nothing_is_ever_run_through_a_shell() -> None:
    files = [PROJECT_ROOT / "function_app.py", *(p for d in FOLDERS for p in (PROJECT_ROOT / d).rglob("*.py"))]
    assert len(files) > 50
    assert [call for path in files for call in shell_calls(path)] == []


def test_the_scan_finds_a_shell_when_there_is_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os, subprocess\nos.system('x')\nsubprocess.run('x', shell=True)\nos.popen('y')\n")
    assert len(shell_calls(bad)) == 3


def account_key() -> str:
    return dict(part.split("=", 1) for part in AZURITE_CONNECTION_STRING.split(";") if part)["AccountKey"]


def test_no_account_key_or_function_key_reaches_the_logs(
    stack: Api, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    function_key = "fk-" + uuid.uuid4().hex
    plane = stack.service
    with caplog.at_level(logging.DEBUG):
        event = drop_manifest(plane, f"secret-{uuid.uuid4().hex[:6]}")
        plane.on_blob_created(event)
        headers = {"x-functions-key": function_key, "Content-Type": "application/yaml"}
        assert stack.call("POST", f"/api/jobs?code={function_key}", manifest("secret-http"), headers).status < 500
        assert stack.call("GET", f"/api/runs?code={function_key}&limit=bad", None, headers).status == 400
        assert stack.call("GET", f"/api/nowhere?code={function_key}").status == 404
        assert main(["--url", stack.url, "--function-key", function_key, "runs", "--json"]) == 0
        json.loads(capsys.readouterr().out)
        settle(plane)
    assert caplog.records, "nothing was logged: the test would prove nothing"
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert account_key() not in logged
    assert function_key not in logged
