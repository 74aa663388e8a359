"""The trainer's process group: the one interface (`Group`) the loop, preemption and reporting use.

Two implementations, one module each, chosen by `--distribution`: `horovod` (launched by
`horovodrun`, or `mpirun` under Azure ML's MpiDistribution) and `pytorch` (launched by
`torchrun`, or by Azure ML's PyTorchDistribution; DistributedDataParallel over Gloo on CPUs and
NCCL on GPUs). Each imports its library only when chosen, so a machine needs only the one it runs.

This package imports neither torch nor Horovod: the control plane reads `NAMES` from it.
"""

from __future__ import annotations

from trainer.distributed.group import Group, Reduction

__all__ = ["DEFAULT", "NAMES", "Group", "Reduction", "connect"]

#: The distributions the trainer can run under; the manifest's `trainer.distribution` names one.
NAMES = ("horovod", "pytorch")
DEFAULT = "horovod"


def connect(name: str) -> Group:
    """Join the job's processes under the named distribution (a single process when no launcher started it)."""
    if name == "horovod":
        from trainer.distributed.horovod import HorovodGroup

        return HorovodGroup()
    if name == "pytorch":
        from trainer.distributed.pytorch import PyTorchGroup

        return PyTorchGroup()
    raise ValueError(f"unknown distribution {name!r}; use one of: {', '.join(NAMES)}")
