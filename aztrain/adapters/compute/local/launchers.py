"""How the local backend starts a job's processes: one launcher per distribution.

The supervisor runs `launcher.argv(python, processes) + program argv`, the program argv being
`python -m <entrypoint> <flags>`: the launcher starts that command once per process on this
machine (one simulated node) with the environment its distribution promises (docs/trainer.md).
Its output is read back by its own conventions: what it puts before a process's lines, and
how it reports the exit code of a process that failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aztrain.domain.manifest import Distribution
from trainer.exit_codes import EXIT_PREEMPTED


@dataclass(frozen=True)
class Launcher:
    """A launcher's command line, the environment it adds, and how to read what it prints."""

    argv: Callable[[Path, int], list[str]]  # (the job's python, processes) -> the argv before the program's
    env: Mapping[str, str]
    line_prefix: str  # a regex: what it prints before each line of a process's output
    exit_code: str  # a regex, with `{code}`: the line naming a failed process's exit code

    def error_line(self) -> re.Pattern[str]:
        """The trainer's "error: ..." line, as this launcher passes it on."""
        return re.compile(rf"^(?:{self.line_prefix})?error: ")

    def preempted_line(self) -> re.Pattern[str]:
        """A line saying a process exited with the trainer's preemption code (the launcher itself exits 1)."""
        return re.compile(self.exit_code.format(code=EXIT_PREEMPTED) + r"\b")


def _horovodrun(python: Path, processes: int) -> list[str]:
    return [str(python.parent / "horovodrun"), "--gloo", "-np", str(processes), "-H", f"localhost:{processes}"]


def _torchrun(python: Path, processes: int) -> list[str]:
    # --standalone: its rendezvous (MASTER_ADDR, MASTER_PORT) on a free port here, so jobs side by side
    # never collide; --no-python: the program's argv starts with its own python, as under horovodrun.
    return [
        str(python.parent / "torchrun"), "--standalone", "--nnodes", "1", "--nproc-per-node", str(processes),
        "--no-python",
    ]  # fmt: skip


LAUNCHERS: dict[Distribution, Launcher] = {
    # horovodrun prefixes every line with "[<rank>]<stdout>:" and prints "Exit code: N" for each failed process.
    "horovod": Launcher(_horovodrun, {}, r"\[\d+\]<std(?:out|err)>:", "Exit code: {code}"),
    # torchrun passes lines through as they are and reports "exitcode  : N" per failed process. It sets
    # RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; NODE_RANK, which Azure ML's
    # PyTorchDistribution sets too, it leaves to the caller: this machine is node 0.
    "pytorch": Launcher(_torchrun, {"NODE_RANK": "0"}, "", r"exitcode\s*:\s*{code}"),
}
