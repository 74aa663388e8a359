"""The README's first steps, run exactly as written on a fresh local stack, as a newcomer would type them.

The README marks its first-steps block (`<!-- first-steps: ... -->`); this test runs its lines in bash,
in a folder laid out like the project (its `.venv`, its `examples/`), with `aztrain` not on `PATH` until
the block's own `source .venv/bin/activate` puts it there. The stack is the one `make dev` starts, on
free ports, which the CLI is pointed at the documented way (AZTRAIN_URL, AZTRAIN_STORAGE_CONNECTION_STRING).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aztrain.service.settings import PROJECT_ROOT
from tests.e2e.conftest import running_stack
from tests.e2e.test_local_loop import TRAINING_TIMEOUT

FIRST_STEPS = re.compile(r"<!-- first-steps:[^>]*-->\n```bash\n(.*?)```", re.DOTALL)


def first_steps() -> str:
    found = FIRST_STEPS.search((PROJECT_ROOT / "README.md").read_text())
    assert found, "README.md marks its first steps with <!-- first-steps: ... --> before a ```bash block"
    return found.group(1)


def test_the_readme_names_activation_first_and_no_run_id_a_newcomer_cannot_know():
    lines = [line.split("#")[0].strip() for line in first_steps().splitlines() if line.strip()]
    assert lines[0] == "source .venv/bin/activate"
    assert not [line for line in lines if re.search(r"\b\d{6,}\b|\b[0-9a-f]{6}\b", line)], lines


def test_the_readmes_first_steps_work_exactly_as_written_on_a_fresh_stack(tmp_path: Path):
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file():
        pytest.skip(f"the tests run outside a virtual environment ({venv}), so there is no .venv to activate")
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(venv)  # the project's .venv, as `make setup` made it
    (clone / "examples").symlink_to(PROJECT_ROOT / "examples")
    outside_venv = [p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != venv / "bin"]
    (tmp_path / "stack").mkdir()
    with running_stack(tmp_path / "stack") as stack:
        env = {
            **os.environ,
            "PATH": os.pathsep.join(outside_venv),
            "AZTRAIN_URL": stack.url,
            "AZTRAIN_STORAGE_CONNECTION_STRING": stack.storage,
            "AZTRAIN_CONFIG": str(tmp_path / "no-config.toml"),
        }
        env.pop("VIRTUAL_ENV", None)
        done = subprocess.run(
            ["bash", "-e", "-c", first_steps()],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=3 * TRAINING_TIMEOUT,
        )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "COMPLETED after" in done.stdout and "epoch 5/5" in done.stdout, said  # submit --wait, then the log
    assert (clone / "model" / "model.pt").stat().st_size > 0, said
