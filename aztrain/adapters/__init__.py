"""Ports on the outside world: storage (Table, Blob), events (Event Grid), compute backends, and in-memory fakes."""
