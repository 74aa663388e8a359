"""The Horovod PyTorch training program the control plane runs: `python -m trainer.train`."""
