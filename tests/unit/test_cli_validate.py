"""`aztrain validate` checks what the compute profile allows, offline, as `plan` and the service do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = """apiVersion: aztrain/v1
kind: TrainingJob
name: gpu-check
data: {container: datasets, prefix: digits/}
compute: {profile: gpu-small, nodes: 1, processes_per_node: PPN}
"""


def validate(tmp_path: Path, processes: int, profile: str = "gpu-small") -> subprocess.CompletedProcess[str]:
    path = tmp_path / "job.yaml"
    path.write_text(MANIFEST.replace("PPN", str(processes)).replace("gpu-small", profile))
    command = [sys.executable, "-m", "aztrain.cli.main", "validate", str(path)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("processes", "profile"), [(2, "gpu-small"), (4, "gpu-small"), (2, "serverless-t4")])
def test_more_processes_per_node_than_the_profile_has_gpus_fails_naming_both_numbers(
    tmp_path: Path, processes: int, profile: str
):
    result = validate(tmp_path, processes, profile)
    assert result.returncode == 1
    assert f"compute.processes_per_node: {processes} is more than the 1 GPU(s) per node" in result.stderr
    assert f"compute profile {profile}" in result.stderr


def test_a_manifest_within_its_profile_is_valid(tmp_path: Path):
    assert validate(tmp_path, 1).returncode == 0
