"""Compute backends (`ComputeBackend`): Azure ML, and this machine's local simulation."""
