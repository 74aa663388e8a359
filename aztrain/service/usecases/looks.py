"""What one reconciler pass has asked already: each cluster, job, data prefix and admission once a run.

Kept apart from `progress`, which decides the steps, so the answers a pass shares live in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aztrain.domain.layout import snapshot_blob
from aztrain.domain.records import BlobInfo, ClusterSpec, JobObservation
from aztrain.domain.retrain import Snapshot, snapshot_of
from aztrain.domain.runs import ACTIVE_STATES, Run
from aztrain.service.usecases import admission, teamgates
from aztrain.service.usecases.context import Context


@dataclass
class Looks:
    """What one pass has asked already: each cluster, job and data prefix once, however many runs ask.

    An answer only ages within a pass (nodes come, jobs move, data lands), so reusing it at
    worst leaves a step to the next pass; each run's step is still decided on its own row.
    """

    ctx: Context
    nodes: dict[ClusterSpec, int] = field(default_factory=dict)
    seen: dict[str, JobObservation] = field(default_factory=dict)
    listings: dict[tuple[str, str], list[BlobInfo]] = field(default_factory=dict)
    snapshots: set[str] = field(default_factory=set)  # ids stored in this pass
    sized: dict[str, int] = field(default_factory=dict)  # `capacity.sync_cluster`: records known to hold so many
    #: The active runs as this pass has them (each replaced once it moves), for the admission gates.
    active: dict[str, Run] | None = None

    #: What the team gates read once a pass (`teamgates.Copies`).
    memo: dict[str, Any] = field(default_factory=dict)

    def active_copies(self) -> list[Run]:
        """Every active run, as the pass has moved them; read from the index once if the pass did not."""
        if self.active is None:
            self.active = {r.id: r for r in self.ctx.store.find_runs(states=ACTIVE_STATES)}
        return teamgates.Copies(self.active.values(), self.memo)

    def moved(self, run: Run) -> None:
        """A run as it now is, for the gates of the runs after it in the pass."""
        if self.active is not None:
            self.active[run.id] = run

    def waiting_reason(self, run: Run) -> str | None:
        return admission.waiting_reason(self.ctx, run, self.active_copies())

    def ready(self, spec: ClusterSpec, *, again: bool = False) -> int:
        """Nodes ready for `spec`; the first ask also starts growing the cluster.

        `again`: a run about to submit asks afresh unless the nodes were already seen up, so a
        cluster that came up during the pass is used at once (one ask per run that moves).
        """
        if spec not in self.nodes or (again and self.nodes[spec] < spec.nodes):
            self.nodes[spec] = self.ctx.backend.ensure_cluster(spec)
        return self.nodes[spec]

    def observe(self, backend_job_id: str) -> JobObservation:
        if backend_job_id not in self.seen:
            self.seen[backend_job_id] = self.ctx.backend.observe(backend_job_id)
        return self.seen[backend_job_id]

    def snapshot(self, run: Run) -> Snapshot:
        """The run's data as listed now, stored immutably under its content hash."""
        data = run.manifest.data
        where = (data.container, data.prefix)
        if where not in self.listings:
            self.listings[where] = self.ctx.data.list(*where)
        snapshot = snapshot_of(run.manifest, self.listings[where])
        if snapshot.id not in self.snapshots:
            document = json.dumps(snapshot.to_json()).encode()
            self.ctx.data.write(self.ctx.settings.runs_container, snapshot_blob(snapshot.id), document)
            self.snapshots.add(snapshot.id)
        return snapshot
