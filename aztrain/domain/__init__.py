"""The domain: runs and their state machine, manifests, retraining rules, records and names. No I/O, no SDKs."""
