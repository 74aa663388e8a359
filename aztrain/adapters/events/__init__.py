"""Outbound events: the `EventSink` on an Event Grid custom topic."""
