"""The Azure ML environment builds what runs locally: the same Python, torch and Horovod, patched the same way."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT = ROOT / "trainer" / "environment"


@pytest.fixture(scope="module")
def conda_pins() -> dict[str, str]:
    dependencies = yaml.safe_load((ENVIRONMENT / "conda.yaml").read_text())["dependencies"]
    pip = next(item["pip"] for item in dependencies if isinstance(item, dict))
    pins = {}
    for line in [*(item for item in dependencies if isinstance(item, str)), *pip]:
        if match := re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(==|=|>=|<)\s*(\S+)", line):
            pins[match[1].lower()] = match[2] + match[3]
    return pins


def test_torch_and_the_trainer_libraries_are_pinned_as_in_pyproject(conda_pins: dict[str, str]):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for requirement in project["project"]["optional-dependencies"]["trainer"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\S+)", requirement)
        assert match, requirement
        assert conda_pins[match[1].lower()] == match[2], f"{match[1]}: conda.yaml and pyproject.toml disagree"
    assert conda_pins["python"] == "=3.11"  # the local venv's


def test_horovod_is_the_locally_built_version_with_the_same_cxx17_patch():
    dockerfile = (ENVIRONMENT / "Dockerfile").read_text()
    script = (ROOT / "scripts" / "build_horovod.sh").read_text()
    local = re.search(r"HOROVOD_VERSION=\$\{HOROVOD_VERSION:-([\d.]+)\}", script)
    image = re.search(r"ARG HOROVOD_VERSION=([\d.]+)", dockerfile)
    assert local and image and image[1] == local[1]
    patch = "sed -i 's/CMAKE_CXX_STANDARD 14/CMAKE_CXX_STANDARD 17/'"
    assert patch in script and patch in dockerfile


def test_the_image_builds_horovod_for_gpus_and_mpi():
    dockerfile = (ENVIRONMENT / "Dockerfile").read_text()
    for flag in ("HOROVOD_GPU_OPERATIONS=NCCL", "HOROVOD_WITH_MPI=1", "HOROVOD_WITH_PYTORCH=1"):
        assert flag in dockerfile
    assert "COPY conda.yaml" in dockerfile
