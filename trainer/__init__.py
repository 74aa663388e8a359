"""The training program the control plane runs: `python -m trainer.train`, data-parallel over Horovod or PyTorch DDP."""
