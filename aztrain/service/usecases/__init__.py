"""The control plane's use cases, one module per concern, each a set of functions over a `Context`.

- `intake`: manifests in (HTTP, manifest blobs), jobs recorded, runs created.
- `blob_events`: each delivered `BlobCreated`: a manifest submitted and started, an upload's arrivals.
- `idempotency`: a request retried with its idempotency key gets the first answer and makes one run.
- `progress`: runs driven forward from what the backend observes; cancel; preemption and resubmit.
- `retraining`: a watched job's pending arrivals, the window that launches a run.
- `registry`: a completed run's model version, its promotion, its lineage.
- `capacity`: cluster records, and scale to zero when the last active run ends.
- `publishing`: the outbox of recorded transitions, published as CloudEvents.
- `deadletters`: events no retry can fix, recorded with the reason and acknowledged.
- `reconciler`: the timer-driven pass over all of them, the backstop for every lost or late event.

`aztrain.service.facade.ControlPlane` is the facade the triggers and tests call (the CLI calls the HTTP API).
"""
