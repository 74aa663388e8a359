"""Image build check: `mpirun -np 2` as root (as Azure ML runs containers) starts two Horovod ranks.

Run by the Dockerfile under mpirun; each rank all-reduces its rank number on the CPU, so the check
needs no GPU, and fails the build if MPI refuses root, starts one rank, or the ranks cannot talk.
"""

import horovod.torch as hvd
import torch

hvd.init()
total = hvd.allreduce(torch.tensor([float(hvd.rank())]), op=hvd.Sum).item()
if hvd.size() != 2 or total != 1.0:
    raise SystemExit(f"mpirun started {hvd.size()} rank(s) summing to {total}; expected 2 ranks summing to 1")
if hvd.rank() == 0:
    print("mpirun as root: 2 Horovod ranks, allreduce ok")
