"""Faithful fakes of external services, placed at the lowest boundary a test can reach."""
