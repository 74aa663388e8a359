"""The local backend's environments: a virtual environment built once per requirements file, or pip's error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aztrain.adapters.compute.local.environments import EnvironmentFailed, python_for


def test_a_requirements_file_builds_one_environment_reused_by_later_runs(tmp_path: Path):
    (tmp_path / "requirements.txt").write_text("numpy\n")  # already in the project: installs offline
    logged: list[str] = []
    spec = {"requirements": "requirements.txt"}
    first = python_for(spec, python=sys.executable, code=tmp_path, cache=tmp_path / "envs", log=logged.append)
    assert first != sys.executable and "first use, building it" in logged[0]
    probe = "import numpy, torch, sys; print(sys.prefix)"  # its own prefix, and the project's packages
    assert subprocess.run([first, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() in first
    again = python_for(spec, python=sys.executable, code=tmp_path, cache=tmp_path / "envs", log=logged.append)
    assert again == first and "reusing the one built before" in logged[-1]


def test_a_requirements_file_pip_cannot_install_fails_with_pips_error(tmp_path: Path):
    (tmp_path / "requirements.txt").write_text("this is not a requirement!!\n")
    logged: list[str] = []
    with pytest.raises(EnvironmentFailed, match=r"pip could not install requirements\.txt") as failed:
        python_for(
            {"requirements": "requirements.txt"},
            python=sys.executable,
            code=tmp_path,
            cache=tmp_path,
            log=logged.append,
        )
    assert "Invalid requirement" in str(failed.value) and "Invalid requirement" in "".join(logged)
    assert [p.name for p in tmp_path.iterdir()] == ["requirements.txt"]  # nothing half-built is left to reuse


def test_other_environments_run_on_the_projects_python_and_say_so(tmp_path: Path):
    logged: list[str] = []
    assert python_for({"image": "x/y:1"}, python="py", code=None, cache=tmp_path, log=logged.append) == "py"
    assert "applies on Azure ML" in logged[0]
    assert python_for({}, python="py", code=None, cache=tmp_path, log=logged.append) == "py"
