"""The read side: what the API shows, as its `aztrain.api` models, each read bounded by what it shows.

As Cosmic Python's views, queries read storage for display and change nothing; the entry points reach
them through the facade (`ControlPlane.queries`). Runs are read a page at a time from storage, newest
first: the first page costs the same number of storage requests at any history (`Runs.page_of_runs`,
docs/architecture.md, Tables). A page ends with an opaque continuation token naming its last item; the
next page starts after it, so items added between pages never make a walk repeat or skip the others.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from aztrain.api import models as api
from aztrain.api import teams as teams_api
from aztrain.api.models import MIN_RUN_PREFIX
from aztrain.domain.errors import AztrainError, NotFound
from aztrain.domain.layout import RUN_ID_PATTERN, is_short_run_id
from aztrain.domain.runs import Run, RunState
from aztrain.service import views
from aztrain.service.run_outputs import (
    MAX_OUTPUT_BYTES,
    LogChunk,
    RunFiles,
    output_files,
    read_log,
    read_metrics,
    read_output,
)
from aztrain.service.usecases import costing, registry, retraining
from aztrain.service.usecases.context import Context

T = TypeVar("T")
log = logging.getLogger(__name__)

#: The most runs an ambiguous run id prefix names.
MAX_CANDIDATES = 20


class AmbiguousRun(AztrainError):
    """A run id prefix matches more than one run; `candidates` names up to `MAX_CANDIDATES` of them."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        count = f"more than {MAX_CANDIDATES}" if len(candidates) > MAX_CANDIDATES else str(len(candidates))
        super().__init__(f"run id {prefix!r} matches {count} runs; give more of the id (the full id settles it)")
        self.candidates = candidates[:MAX_CANDIDATES]


class OutputTooLarge(AztrainError):
    """An output file beyond what one API answer carries: it is read from the runs container instead."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is more than the {MAX_OUTPUT_BYTES // 2**20} MiB one answer carries; "
            "download it from the runs container (az storage blob download, or the SDK)"
        )


class InvalidContinuation(AztrainError):
    """A continuation token this API did not issue."""

    def __init__(self) -> None:
        super().__init__("not a token this API issued; pass the `next` of the previous page unchanged")


@dataclass(frozen=True)
class RunLog:
    """A chunk of a run's log, and the run's state when it was read (a follower stops at a terminal one)."""

    chunk: LogChunk
    state: RunState


class Queries:
    """Reads for display, on one service context."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    @property
    def _container(self) -> str:
        return self._ctx.settings.runs_container

    # ------------------------------------------------------------------ cost
    def cost(self, month: str | None, *, team: str | None) -> teams_api.CostReport:
        """A month's spend per team (with its budget), job and day: one ledger partition plus the active index."""
        budgets = {t.name: t.monthly_budget for t in self._ctx.store.list_teams()}
        report = costing.report(self._ctx, month, team=team)
        return views.cost_report_view(report, region=self._ctx.settings.region, budgets=budgets)

    # ------------------------------------------------------------------ runs
    def runs(self, *, job: str | None, states: Sequence[RunState], limit: int, continuation: str | None) -> api.RunList:
        """A page of runs, newest first: one bounded read of storage, however many runs came before."""
        after = _after(continuation)
        # One more than the page: whether it exists says if there is a next page, without another read.
        runs = self._ctx.store.page_of_runs(job=job, states=states or None, after=after, limit=limit + 1)
        shown = runs[:limit]
        return api.RunList(runs=[self.view(r) for r in shown], next=_token(shown[-1].id) if len(runs) > limit else None)

    def run(self, ref: str) -> Run:
        """A run by its id, short id or a unique prefix of its id; `NotFound`, or `AmbiguousRun` naming candidates.

        A short id is looked up in its own index (`runaliases`: one partition read); a prefix in the run
        list's partition it names (one range read); either at any history. The run found is then read
        itself, as an index's copy may be a step behind.
        """
        store = self._ctx.store
        if is_short_run_id(ref):  # the id's random end, what people see: its own index, one partition read
            named = store.runs_by_short_id(ref)
            if len(named) > 1:
                raise AmbiguousRun(ref, [run.id for run in named])
            if named:
                return named[0]
            if not ref.isdigit():  # six digits may still be the start of an id
                raise NotFound("run", ref)
        if not re.fullmatch(RUN_ID_PATTERN, ref):
            if len(ref) < MIN_RUN_PREFIX:
                raise NotFound("run", ref)
            matches = store.runs_by_prefix(ref, MAX_CANDIDATES + 1)
            if len(matches) > 1:
                raise AmbiguousRun(ref, [run.id for run in matches])
            ref = matches[0].id if matches else ref
        return self._ctx.get_run(ref)

    def view(self, run: Run) -> api.RunView:
        return views.run_view(run, runs_container=self._container)

    def detail(self, ref: str, *, refused: bool) -> api.RunDetail:
        """A run and its history; refused transitions (late or duplicate news) only if `refused`."""
        run = self.run(ref)
        history = [t for t in self._ctx.store.history(run.id) if t.applied or refused]
        return views.run_detail(run, history, runs_container=self._container)

    def log(self, ref: str, *, offset: int, tail: int | None) -> RunLog:
        run = self.run(ref)
        files = RunFiles.of(run, self._container)
        return RunLog(read_log(self._ctx.data, files, offset=offset, tail=tail), run.state)

    def metrics(self, ref: str) -> api.Metrics:
        run = self.run(ref)
        epochs, final = read_metrics(self._ctx.data, RunFiles.of(run, self._container))
        rows = [api.EpochMetrics.model_validate(row) for row in epochs]
        return api.Metrics(run_id=run.id, state=run.state, epochs=rows, final=final or run.metrics or None)

    def output_files(self, ref: str) -> api.OutputList:
        """The files at the top of the run's outputs folder (model, metrics): one listing of that folder."""
        run = self.run(ref)
        files = RunFiles.of(run, self._container)
        found = [
            api.OutputFile(name=blob.name.rsplit("/", 1)[-1], size=blob.size, path=f"{files.container}/{blob.name}")
            for blob in output_files(self._ctx.data, files)
        ]
        return api.OutputList(run_id=run.id, files=found)

    def output(self, ref: str, name: str) -> bytes:
        """One output file's bytes; `NotFound`, or `OutputTooLarge` for one an answer cannot carry."""
        files = RunFiles.of(self.run(ref), self._container)
        body = read_output(self._ctx.data, files, name)
        if len(body) > MAX_OUTPUT_BYTES:
            raise OutputTooLarge(f"{files.container}/{files.output(name)}")
        return body

    # --------------------------------------------------------- jobs, models
    def jobs(self, *, limit: int, continuation: str | None) -> api.JobList:
        jobs, token = _page(self._ctx.store.list_jobs(), lambda j: j.name, limit, continuation)
        return api.JobList(jobs=[views.job_view(j) for j in jobs], next=token)

    def window(self, job: str) -> api.WindowView:
        return views.window_view(job, retraining.window(self._ctx, job))

    def models(self, *, limit: int, continuation: str | None) -> api.ModelList:
        versions, token = _page(
            self._ctx.store.model_versions(),
            # Names never contain a space, which sorts before any name character: name order, then version.
            lambda v: f"{v.name} {v.version:010d}",
            limit,
            continuation,
        )
        return api.ModelList(models=[views.model_view(v) for v in versions], next=token)

    def model(self, name: str) -> api.ModelVersions:
        """A model's versions and its current one; `NotFound` if it has none."""
        versions = self._ctx.store.model_versions(name)
        if not versions:
            raise NotFound("model", name)
        current = registry.current_model(self._ctx, name)
        return api.ModelVersions(
            name=name, current=current.version if current else None, versions=[views.model_view(v) for v in versions]
        )

    def lineage(self, name: str, version: int) -> api.Lineage:
        return views.lineage_view(registry.lineage(self._ctx, name, version), runs_container=self._container)

    # ---------------------------------------------------------- the rest
    def health(self) -> api.Health:
        """Liveness plus a storage round trip; the storage error itself goes to the log, not the answer."""
        backend = self._ctx.backend.name
        try:
            self._ctx.store.list_clusters()
        except Exception as exc:  # report, don't crash: this answer exists to say what is wrong
            log.warning("health: storage unreachable", exc_info=True)
            storage = f"unreachable ({type(exc).__name__}); see the log"
            return api.Health(status="unhealthy", backend=backend, storage=storage)
        return api.Health(status="ok", backend=backend, storage="ok")

    def clusters(self) -> api.ClusterList:
        return api.ClusterList(clusters=[views.cluster_view(c) for c in self._ctx.store.list_clusters()])

    def dead_letters(self, *, limit: int, continuation: str | None) -> api.DeadLetterList:
        letters, token = _page(
            self._ctx.store.dead_letters(),
            # Event ids never hold a newline, which sorts before any of their characters: time order, then function.
            lambda d: f"{d.at.isoformat()}\n{d.function}\n{d.event_id}",
            limit,
            continuation,
        )
        return api.DeadLetterList(deadletters=[views.dead_letter_view(d) for d in letters], next=token)


def _page(
    items: Sequence[T], key: Callable[[T], str], limit: int, continuation: str | None
) -> tuple[list[T], str | None]:
    """The page of `items` (ordered by `key`) after the token, and the next page's token (None at the end).

    For the lists that are read whole (jobs, models, dead letters: they grow with what is kept, not with runs).
    """
    after = _after(continuation)
    remaining = sorted((item for item in items if after is None or key(item) > after), key=key)
    chosen = remaining[:limit]
    return chosen, _token(key(chosen[-1])) if len(remaining) > limit else None


def _token(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def _after(token: str | None) -> str | None:
    """The key a token names (None for the first page); `InvalidContinuation` for one this API did not issue."""
    if token is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        decoded = None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("after"), str):
        raise InvalidContinuation()
    after: str = decoded["after"]
    return after
