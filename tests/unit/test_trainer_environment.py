"""The Azure ML environment builds what runs locally: the same Python, torch and Horovod, patched the same way.

It carries both distributions, and its build checks both: torch for PyTorch DDP, Horovod for Horovod.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT = ROOT / "trainer" / "environment"
STUBS = "/usr/local/cuda/targets/x86_64-linux/lib/stubs"


def load_check(name: str = "check_horovod_build") -> ModuleType:
    """trainer/environment/<name>.py, a script the image build runs (not a package module)."""
    spec = importlib.util.spec_from_file_location(name, ENVIRONMENT / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def horovod_run_step(dockerfile: str) -> list[str]:
    """The `RUN` instruction that builds Horovod, as its `&&`-separated commands."""
    step = next(
        block for block in re.split(r"\n(?=[A-Z]+ )", dockerfile) if "pip install" in block and "horovod" in block
    )
    return [part.strip() for part in step.removeprefix("RUN").replace("\\\n", " ").split("&&")]


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
    for flag in ("HOROVOD_GPU_OPERATIONS=NCCL", "HOROVOD_WITH_MPI=1", "HOROVOD_WITH_PYTORCH=1", "HOROVOD_WITH_GLOO=1"):
        assert flag in dockerfile
    assert "COPY conda.yaml" in dockerfile


def test_mpi_starts_as_root_and_the_build_proves_two_ranks():
    """Azure ML runs containers as root, which OpenMPI refuses without both variables."""
    dockerfile = (ENVIRONMENT / "Dockerfile").read_text()
    assert re.search(r"^ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1$", dockerfile, re.MULTILINE)
    steps = horovod_run_step(dockerfile)
    check = steps.index("mpirun -np 2 python /opt/aztrain/check_mpi_ranks.py")
    assert steps.index("python /opt/aztrain/check_horovod_build.py") < check < steps.index("ldconfig")
    assert (ENVIRONMENT / "check_mpi_ranks.py").is_file()


def test_horovod_is_built_against_the_cuda_stubs_and_the_build_fails_without_mpi_and_nccl():
    """As upstream's docker/horovod/Dockerfile: stubs on the loader path for the build and the import check,
    then a plain `ldconfig` drops them; the check script, not `horovodrun --check-build` (exit 0 always), gates."""
    dockerfile = (ENVIRONMENT / "Dockerfile").read_text()
    steps = horovod_run_step(dockerfile)
    install = next(i for i, step in enumerate(steps) if "pip install" in step and '"$src"' in step)
    check = steps.index("python /opt/aztrain/check_horovod_build.py")
    assert steps.index(f"ldconfig {STUBS}") < install < check  # one RUN: a failed check fails the build
    assert steps[-1] == "ldconfig"  # the stubs leave the loader cache again
    assert "HOROVOD_GPU_OPERATIONS=NCCL" in steps[install] and "HOROVOD_WITH_MPI=1" in steps[install]
    assert "COPY check_horovod_build.py check_mpi_ranks.py /opt/aztrain/" in dockerfile
    assert dockerfile.index("COPY check_horovod_build.py") < dockerfile.index(f"ldconfig {STUBS}")


def fake_horovod(**built: int) -> ModuleType:
    module = ModuleType("horovod.torch")
    for probe in ("mpi_built", "nccl_built", "cuda_built", "gloo_built"):
        value = built.get(probe, 1)
        setattr(module, probe, lambda value=value: value)
    return module


def test_the_build_check_names_every_missing_feature():
    check = load_check()
    assert check.missing(fake_horovod(nccl_built=22105)) == []  # nccl_built() returns NCCL's version code
    assert check.missing(fake_horovod(mpi_built=0, nccl_built=0)) == ["MPI", "NCCL"]
    assert check.missing(fake_horovod(cuda_built=0, gloo_built=0)) == ["CUDA", "Gloo"]


def test_the_build_check_fails_for_a_horovod_without_mpi(monkeypatch: pytest.MonkeyPatch, capsys):
    check = load_check()

    def install(torch: ModuleType) -> None:
        horovod = ModuleType("horovod")
        horovod.torch = torch  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "horovod", horovod)
        monkeypatch.setitem(sys.modules, "horovod.torch", torch)

    install(fake_horovod(mpi_built=0))
    assert check.main() == 1
    assert "Horovod was built without MPI: needed for Azure ML's MpiDistribution" in capsys.readouterr().err
    install(fake_horovod())
    assert check.main() == 0
    assert "Horovod build check passed: MPI, NCCL, CUDA, Gloo" in capsys.readouterr().out


@pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="Horovod is not installed here")
def test_the_build_check_rejects_the_local_gloo_only_build():
    """The local venv's Horovod (scripts/build_horovod.sh: CPU, Gloo, no MPI) is what the image must not ship."""
    script = ENVIRONMENT / "check_horovod_build.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "built without MPI" in result.stderr and "built without NCCL" in result.stderr


def test_the_image_checks_torch_for_pytorch_ddp_in_its_own_environment_before_building_horovod():
    dockerfile = (ENVIRONMENT / "Dockerfile").read_text()
    copy, run = (
        "COPY check_torch_build.py /opt/aztrain/check_torch_build.py",
        "RUN python /opt/aztrain/check_torch_build.py",
    )
    assert copy in dockerfile and run in dockerfile
    # After the conda environment is first on PATH (its python and torchrun), before Horovod's long build.
    assert dockerfile.index("ENV PATH=$CONDA_DIR/envs/aztrain/bin") < dockerfile.index(copy) < dockerfile.index(run)
    assert dockerfile.index(run) < dockerfile.index('pip download --quiet --no-deps --no-binary=:all: "horovod')


def fake_torch(**present: bool) -> ModuleType:
    torch = ModuleType("torch")
    torch.__version__ = "2.13.0+test"  # type: ignore[attr-defined]
    torch.backends = SimpleNamespace(cuda=SimpleNamespace(is_built=lambda: present.get("cuda", True)))  # type: ignore[attr-defined]
    torch.distributed = SimpleNamespace(  # type: ignore[attr-defined]
        is_available=lambda: True,
        is_nccl_available=lambda: present.get("nccl", True),
        is_gloo_available=lambda: present.get("gloo", True),
    )
    return torch


def test_the_torch_check_names_every_missing_feature():
    check = load_check("check_torch_build")
    assert check.missing(fake_torch()) == []
    assert check.missing(fake_torch(cuda=False, nccl=False)) == ["CUDA", "NCCL"]
    assert check.missing(fake_torch(gloo=False)) == ["Gloo"]


def test_the_torch_check_rejects_this_machines_cpu_only_torch():
    """The local venv's torch is a CPU build (no CUDA, no NCCL): exactly what the image must not ship."""
    result = subprocess.run(
        [sys.executable, str(ENVIRONMENT / "check_torch_build.py")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "lacks CUDA: needed for GPU tensors at all" in result.stderr and "lacks NCCL" in result.stderr
    assert "lacks torchrun" not in result.stderr  # the venv has it beside its python, as the image's env does
