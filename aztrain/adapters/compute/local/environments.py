"""Where a local job's program runs: the project's Python, or a virtual environment built from its requirements file.

The environment is built on top of the project's Python (its packages, torch and Horovod among
them, stay importable through a `.pth` file; what the file installs comes first), once per distinct
requirements file: it is cached under its hash, the first build is logged as such and later runs
reuse it. It is built in a staging folder and renamed into place, so a cached one is complete.
Registered environments, images and conda files are Azure ML's; here they run on the project's Python.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

#: pip's output beyond this many last lines stays in the log only, not in the run's error.
_ERROR_LINES = 5
_BUILD_TIMEOUT_SECONDS = 900


class EnvironmentFailed(Exception):
    """The requirements file did not install; the message holds pip's last lines."""


def python_for(
    environment: dict[str, str], *, python: str, code: Path | None, cache: Path, log: Callable[[str], None]
) -> str:
    """The interpreter the job's program runs on (`log` is told what was chosen, and pip's output)."""
    if not environment:
        return python
    if "requirements" in environment and code is not None:
        return _virtualenv(python, code / environment["requirements"], cache, log)
    kind, value = next(iter(environment.items()))
    log(f"aztrain: environment {kind} {value} applies on Azure ML; the local backend runs the project's Python\n")
    return python


def _virtualenv(python: str, requirements: Path, cache: Path, log: Callable[[str], None]) -> str:
    content = requirements.read_bytes()
    digest = hashlib.sha256(python.encode() + b"\0" + content).hexdigest()[:16]
    target = cache / digest
    if (target / "bin" / "python").exists():
        log(f"aztrain: environment {digest} from {requirements.name}: reusing the one built before\n")
        return str(target / "bin" / "python")
    log(f"aztrain: environment {digest} from {requirements.name}: first use, building it\n")
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".staging-"))
    try:
        _run([python, "-m", "venv", "--without-pip", str(staging)], log)
        built = staging / "bin" / "python"
        site = _run([str(built), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], log).strip()
        project = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], log).strip()
        Path(site, "aztrain-project.pth").write_text(project + "\n")  # torch, Horovod and pip itself
        pip = [str(built), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-r", str(requirements)]
        _run(pip, log, what=f"pip could not install {requirements.name}")
        with contextlib.suppress(OSError):  # another job built it first: the same file
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target / "bin" / "python")


def _run(command: list[str], log: Callable[[str], None], *, what: str = "") -> str:
    """Run `command`, its output into the log; `EnvironmentFailed` (`what` and its last lines) if it fails."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_SECONDS, check=False, cwd=Path.cwd()
        )
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentFailed(f"{what or command[0]}: timed out after {_BUILD_TIMEOUT_SECONDS} s") from exc
    output = done.stdout + done.stderr
    if what:
        log(output)
    if done.returncode != 0:
        tail = " | ".join(line for line in output.splitlines()[-_ERROR_LINES:] if line.strip())
        raise EnvironmentFailed(f"{what or ' '.join(command[:3])} (exit {done.returncode}): {tail}")
    return done.stdout
