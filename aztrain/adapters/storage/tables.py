"""`ControlStore` on Azure Table Storage (azure-data-tables), with ETag-conditional writes.

One adapter implements every storage role (runs, jobs, claims, arrivals, models, clusters,
dead letters): they share one account and the same entity mapping rules. It runs past 300 lines because
each of its tables needs its own entity mapper, kept beside the queries that read it.

| table       | PartitionKey | RowKey                    |
| ----------- | ------------ | ------------------------- |
| jobs        | job name     | `spec`                    |
| runs        | job name     | run id (newest first)     |
| runhistory  | run id       | zero-padded sequence      |
| claims      | scope        | event key                 |
| clusters    | backend      | cluster name              |
| arrivals    | job name     | upload key (blob + ETag)  |
| models      | model name   | zero-padded version       |
| deadletters | function     | event id (hashed if odd)  |
| active      | `active`     | run id                    |
| watches     | `watches`    | job name                  |
| runsbytime  | time bucket  | run id (newest first)     |
| runaliases  | short run id | run id                    |

`active` indexes the runs that are not finished, or whose events are not yet published: a copy
of each such run's row, kept by `add_run`/`save_run` (and `refresh_active` after an outbox is
cleared), so the reconciler, cluster capacity and the outbox backstop read only these, never the
whole history (readers that want active runs filter by state). A new run's copy is inserted
before its row (never replacing one), so no run is missed and a crash between the two is finished
by the reconciler; after that a copy is written after the run's own row, so it can be behind its
run (a crash between the two writes, or two writers racing), never ahead: the reconciler decides
on the copy whether a step could be due, decides again on the run's own row before writing, and
refreshes a copy it finds behind. `watches` does
the same for jobs watching data, so a data upload reads the jobs that watch its container, not
every job. `runsbytime` is the run list: a copy of every run's row,
partitioned by when the run was made (a run id's leading digits), kept like `active` but never dropped,
so a page of runs, newest first, is one range read from the start of the table or from a token's run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, TableServiceClient, TableTransactionError, UpdateMode

from aztrain.domain.cost import CostEntry, Rate
from aztrain.domain.documents import MAX_CHARS
from aztrain.domain.errors import DOCUMENT, ConcurrencyError, FieldProblem
from aztrain.domain.layout import short_run_id
from aztrain.domain.manifest import JobManifest
from aztrain.domain.records import Arrival, ClusterRecord, DeadLetter, JobRecord, ModelVersion
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState, Staged, Transition
from aztrain.domain.teams import Team
from aztrain.service import faults

TABLES = (
    "jobs",
    "runs",
    "runhistory",
    "claims",
    "clusters",
    "arrivals",
    "models",
    "deadletters",
    "active",
    "watches",
    "runsbytime",
    "costs",
    "teams",
    "runaliases",
)
_ACTIVE = "active"  # the one partition of the `active` index: read whole, it holds only active runs
_WATCHES = "watches"  # the one partition of the `watches` index: the jobs that watch data, by name
#: A run id's leading digits name its partition in `runsbytime`: 10^8 ms (about 28 hours) of creation times.
_BUCKET_DIGITS = 5
_TEAMS = "teams"  # the one partition of `teams`: a handful of rows, read whole
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._:@=-]{1,512}$")
_BATCH = 100  # Table Storage's limit on operations in one transaction
_REMEMBERED = 100_000  # run ids whose job a store remembers (a few MB), forgotten all at once beyond
T = TypeVar("T")
_PROBLEMS, _PROBLEM_CHARS = 50, 1000  # a REJECTED run's problems kept, and the characters of each
_OUTBOX_DETAIL = 500  # characters of a transition's detail kept in the outbox (history keeps 16000)
_PART_CHARS = 32_000  # characters of a manifest's JSON in one string property (`_manifest_columns`)
_MANIFEST_PARTS = -(-MAX_CHARS // _PART_CHARS)  # the most parts a manifest within the domain's limit takes


class TableControlStore:
    """Every role of `ControlStore` in the tables of one storage account."""

    def __init__(self, service: TableServiceClient, *, prefix: str = "") -> None:
        self._service = service
        self._prefix = prefix
        self._jobs = self._table("jobs")
        self._runs = self._table("runs")
        self._history = self._table("runhistory")
        self._claims = self._table("claims")
        self._clusters = self._table("clusters")
        self._arrivals = self._table("arrivals")
        self._models = self._table("models")
        self._dead_letters = self._table("deadletters")
        self._active = self._table("active")
        self._watches = self._table("watches")
        self._listed = self._table("runsbytime")
        self._costs = self._table("costs")
        self._teams = self._table("teams")
        self._aliases = self._table("runaliases")
        self._job_of: dict[str, str] = {}  # run id -> job, for the runs this process has seen

    def _table(self, name: str) -> TableClient:
        return self._service.get_table_client(self._prefix + name)

    def create_tables(self) -> None:
        """Create the tables if missing (the dev host and tests; `infra/` does it in Azure), and list old runs."""
        for name in TABLES:
            self._service.create_table_if_not_exists(self._prefix + name)
        self.list_unlisted_runs()

    def list_unlisted_runs(self) -> int:
        """Copy every run into `runsbytime` when it holds none yet: runs stored before it existed.

        Two reads when there is nothing to do; once, a read of the whole `runs` table. Returns how many were copied.
        """
        if next(iter(self._listed.list_entities(results_per_page=1, select=["RowKey"])), None) is not None:
            return 0
        copied = 0
        for entity in self._runs.list_entities():
            _insert_once(self._listed, listed_entity(_run_from_entity(entity)))  # a run saved meanwhile wins
            copied += 1
        return copied

    # ---------------------------------------------------------------- jobs
    def get_job(self, name: str) -> JobRecord | None:
        try:
            return _job_from_entity(self._jobs.get_entity(name, "spec"))
        except ResourceNotFoundError:
            return None

    def put_job(self, job: JobRecord) -> JobRecord:
        # The watch index is a superset: a job enters it before its row says it watches, leaves it after.
        watch = {"PartitionKey": _WATCHES, "RowKey": job.name, "Container": job.watch_container}
        if job.watch_prefix:
            self._watches.upsert_entity(watch, mode=UpdateMode.REPLACE)
        stored = replace(job, etag=self._write(self._jobs, _job_to_entity(job), job.etag, f"job {job.name}"))
        if not job.watch_prefix and job.etag is not None:  # a new job (no ETag) has no watch row to drop
            with contextlib.suppress(ResourceNotFoundError):
                self._watches.delete_entity(_WATCHES, job.name)
        return stored

    def list_jobs(self) -> list[JobRecord]:
        return sorted((_job_from_entity(e) for e in self._jobs.list_entities()), key=lambda j: j.name)

    def watching(self, container: str | None = None) -> list[JobRecord]:
        where, params = "PartitionKey eq @watches", {"watches": _WATCHES}
        if container is not None:
            where, params = where + " and Container eq @container", params | {"container": container}
        rows = self._watches.query_entities(where, parameters=params, select=["RowKey"])
        jobs = (self.get_job(row["RowKey"]) for row in rows)  # the job's own row has the last word
        return [j for j in jobs if j is not None and j.watch_prefix and container in (None, j.watch_container)]

    # ---------------------------------------------------------------- runs
    def add_run(self, run: Run) -> Run:
        # The creation row goes first: it is also the index from run id to job (see get_run), and
        # creating it takes the run id for this job (a retry after a crash finds its own job there).
        if run.last:
            try:
                self._history.create_entity(_transition_to_entity(run, run.last))
            except ResourceExistsError:
                if self._history.get_entity(run.id, _seq_key(run.last.seq))["Job"] != run.job:
                    raise ConcurrencyError(f"run {run.id} is another job's") from None
        # Before the run, so the index never misses one; inserted, never replaced: a second add of
        # the same run (a race, a retry) must not put a creation copy over a later step's.
        _insert_once(self._active, active_entity(run))
        _insert_once(self._listed, listed_entity(run))
        # The short id's row: a partition per short id, so finding what it names is one partition read.
        _insert_once(self._aliases, {"PartitionKey": short_run_id(run.id), "RowKey": run.id, "Job": run.job})
        faults.checkpoint("runs.after-index")
        return self._remember(replace(run, etag=self._write(self._runs, run_entity(run), None, f"run {run.id}")))

    def save_run(self, run: Run) -> Run:
        if run.etag is None:
            raise ValueError("save_run needs a run read from the store (it has no ETag)")
        stored = replace(run, etag=self._write(self._runs, run_entity(run), run.etag, f"run {run.id}"))
        self._append_history(stored)
        self._index(stored)
        return stored

    def refresh_active(self, run: Run) -> None:
        self._index(run)

    def _index(self, run: Run) -> None:
        """Copy the run to the list, and to `active` while it is active or has events to publish (dropped after)."""
        self._listed.upsert_entity(listed_entity(run), mode=UpdateMode.REPLACE)
        if run.is_terminal and not run.outbox:
            with contextlib.suppress(ResourceNotFoundError):
                self._active.delete_entity(_ACTIVE, run.id)
            return
        self._active.upsert_entity(active_entity(run), mode=UpdateMode.REPLACE)

    def _append_history(self, run: Run) -> None:
        # Upsert, not create: rewriting the same row after a crash is harmless.
        if run.last:
            self._history.upsert_entity(_transition_to_entity(run, run.last), mode=UpdateMode.REPLACE)

    def get_run(self, run_id: str) -> Run | None:
        # The history's first row names the job, which is the run's PartitionKey: a second point
        # read, unless this process has seen the run before (a run's job never changes).
        try:
            job = self._job_of.get(run_id) or self._history.get_entity(run_id, _seq_key(1))["Job"]
            run = _run_from_entity(self._runs.get_entity(job, run_id))
        except ResourceNotFoundError:
            return None
        return self._remember(run)

    def _remember(self, run: Run) -> Run:
        if len(self._job_of) >= _REMEMBERED:
            self._job_of.clear()
        self._job_of[run.id] = run.job
        return run

    def runs_by_short_id(self, short_id: str) -> list[Run]:
        rows = self._aliases.query_entities("PartitionKey eq @short", parameters={"short": short_id})
        found = []
        for row in rows:  # one row per run, and two runs share a short id rarely (24 random bits)
            self._job_of.setdefault(row["RowKey"], row["Job"])
            run = self.get_run(row["RowKey"])
            if run is not None:  # None: a crash between the alias row and the run's own row
                found.append(run)
        return found

    def find_runs(
        self,
        *,
        job: str | None = None,
        states: Iterable[RunState] | None = None,
        cluster: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        clauses, params = [], {}
        table = self._runs
        if job is None and states is not None and set(states) <= ACTIVE_STATES:
            table = self._active  # active runs only: read the index, not the whole history
            clauses.append("PartitionKey eq @active")
            params["active"] = _ACTIVE
        if job is not None:
            clauses.append("PartitionKey eq @job")
            params["job"] = job
        if cluster is not None:
            clauses.append("Cluster eq @cluster")
            params["cluster"] = cluster
        if states is not None:
            if not set(states):
                return []
            clauses.append(_in_states(states, params))
        # One partition comes back in RowKey order, which is newest first: its first `limit` rows are the answer.
        first = limit if limit is not None and (table is self._active or job is not None) else None
        # A copy in the index is read for deciding, never for publishing: leave its outbox on the wire.
        select = copy_columns() if table is self._active else None
        entities: Iterable[TableEntity] = (
            table.query_entities(" and ".join(clauses), parameters=params, results_per_page=first, select=select)
            if clauses
            else table.list_entities(results_per_page=first, select=select)
        )
        if first is not None:
            entities = itertools.islice(entities, first)
        read = _indexed_run_from_entity if table is self._active else _run_from_entity
        runs = sorted((self._remember(read(e)) for e in entities), key=lambda r: r.id)
        return runs[:limit] if limit is not None else runs

    def page_of_runs(
        self,
        *,
        job: str | None = None,
        states: Iterable[RunState] | None = None,
        after: str | None = None,
        limit: int,
    ) -> list[Run]:
        wanted = set(states) if states is not None else None
        if wanted is not None and wanted <= ACTIVE_STATES:  # the active index holds them all: it grows with them
            active = self.find_runs(states=wanted)
            return [r for r in active if job in (None, r.job) and (after is None or r.id > after)][:limit]
        # Rows come back in key order, which is newest first, in one partition (a job's) or across the list's
        # partitions: a page is the first `limit` rows from the start, or from just after the token's run.
        table, clauses, params = (self._runs, ["PartitionKey eq @job"], {"job": job}) if job else (self._listed, [], {})
        if after is not None:
            if job is None:  # where the range starts: the token's partition (partitions sort as their runs)
                clauses.append("PartitionKey ge @bucket")
                params["bucket"] = _bucket(after)
            clauses.append("RowKey gt @after")
            params["after"] = after
        if wanted is not None:  # rows not in these states are read past, on the server, until the page is full
            clauses.append(_in_states(wanted, params))
        rows: Iterable[TableEntity] = (
            table.query_entities(" and ".join(clauses), parameters=params, results_per_page=limit)
            if clauses
            else table.list_entities(results_per_page=limit)
        )
        read = _run_from_entity if job else _indexed_run_from_entity
        return [self._remember(read(e)) for e in itertools.islice(rows, limit)]

    def runs_by_prefix(self, prefix: str, limit: int) -> list[Run]:
        # A prefix longer than a partition's names one partition, whose run ids it bounds from below and above.
        rows = self._listed.query_entities(
            "PartitionKey eq @bucket and RowKey ge @prefix and RowKey lt @end",
            parameters={"bucket": _bucket(prefix), "prefix": prefix, "end": prefix + "~"},  # "~" sorts after id chars
            results_per_page=limit,
        )
        return [_indexed_run_from_entity(e) for e in itertools.islice(rows, limit)]

    # -------------------------------------------------------------- outbox
    def save_outbox(self, run: Run) -> Run:
        if run.etag is None:
            raise ValueError("save_outbox needs a run read from the store (it has no ETag)")
        entity = {"PartitionKey": run.job, "RowKey": run.id, **_outbox_columns(run)}
        try:
            meta = self._runs.update_entity(
                entity, mode=UpdateMode.MERGE, etag=run.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise ConcurrencyError(f"run {run.id}") from None
        return replace(run, etag=str(meta["etag"]))

    def unpublished_runs(self) -> list[Run]:
        # The index, not the runs table: a finished run keeps its copy there until its outbox is drained.
        rows = self._active.query_entities(
            "PartitionKey eq @active and Unpublished eq true", parameters={"active": _ACTIVE}, select=copy_columns()
        )
        return sorted((_indexed_run_from_entity(e) for e in rows), key=lambda r: r.id)

    def history(self, run_id: str) -> list[Transition]:
        rows = self._history.query_entities("PartitionKey eq @run", parameters={"run": run_id})
        return sorted((_transition_from_entity(e) for e in rows), key=lambda t: t.seq)

    # -------------------------------------------------------------- claims
    def claim(self, scope: str, key: str, value: str) -> str:
        row = key if _SAFE_KEY.match(key) else hashlib.sha256(key.encode()).hexdigest()
        try:
            self._claims.create_entity({"PartitionKey": scope, "RowKey": row, "Value": value, "Key": key})
            return value
        except ResourceExistsError:  # someone claimed first: theirs is the answer
            return str(self._claims.get_entity(scope, row)["Value"])

    # ------------------------------------------------------------ arrivals
    def record_arrivals(self, arrivals: Sequence[Arrival]) -> None:
        unique = {(a.job, a.key): _arrival_to_entity(a) for a in reversed(arrivals)}  # the first of each key
        by_job: dict[str, list[dict[str, Any]]] = {}
        for (job, _), entity in sorted(unique.items()):
            by_job.setdefault(job, []).append(entity)
        for batch in by_job.values():  # a redelivery known already is left as it is
            _transact_or_one_by_one(self._arrivals, "create", batch, lambda e: _insert_once(self._arrivals, e))

    def pending_arrivals(self, job: str) -> list[Arrival]:
        rows = self._arrivals.query_entities("PartitionKey eq @job and ConsumedBy eq ''", parameters={"job": job})
        return sorted((_arrival_from_entity(e) for e in rows), key=lambda a: (a.at, a.key))

    def consume_arrivals(self, job: str, keys: Iterable[str], by: str) -> None:
        # One partition: up to 100 updates per entity-group transaction.
        operations = [
            ("update", {"PartitionKey": job, "RowKey": key, "ConsumedBy": by}, {"mode": UpdateMode.MERGE})
            for key in keys
        ]
        for chunk in _batches(operations):
            self._arrivals.submit_transaction(chunk)

    # -------------------------------------------------------------- models
    def add_model_version(self, model: ModelVersion) -> ModelVersion:
        self._write(self._models, _model_to_entity(model), None, f"model {model.name} version {model.version}")
        return model

    def model_versions(self, name: str | None = None) -> list[ModelVersion]:
        rows = (
            self._models.query_entities("PartitionKey eq @name", parameters={"name": name})
            if name is not None
            else self._models.list_entities()
        )
        return sorted((_model_from_entity(e) for e in rows), key=lambda m: (m.name, m.version))

    # ------------------------------------------------------------ clusters
    def get_cluster(self, backend: str, name: str) -> ClusterRecord | None:
        try:
            return _cluster_from_entity(self._clusters.get_entity(backend, name))
        except ResourceNotFoundError:
            return None

    def put_cluster(self, cluster: ClusterRecord) -> ClusterRecord:
        self._clusters.upsert_entity(_cluster_to_entity(cluster), mode=UpdateMode.REPLACE)
        return cluster

    def list_clusters(self) -> list[ClusterRecord]:
        return [_cluster_from_entity(e) for e in self._clusters.list_entities()]

    # --------------------------------------------------------- dead letters
    def add_dead_letter(self, letter: DeadLetter) -> None:
        # Event ids come from outside: one that is not a safe key is stored under its hash.
        key = letter.event_id
        entity = {
            "PartitionKey": letter.function,
            "RowKey": key if _SAFE_KEY.match(key) else hashlib.sha256(key.encode()).hexdigest(),
            "EventId": key,
            "EventType": letter.event_type,
            "Subject": letter.subject,
            "Reason": letter.reason,
            "At": letter.at,
        }
        _insert_once(self._dead_letters, entity)  # a redelivery of an event already dead-lettered changes nothing

    def dead_letters(self) -> list[DeadLetter]:
        letters = (_dead_letter_from_entity(e) for e in self._dead_letters.list_entities())
        return sorted(letters, key=lambda d: (d.at, d.function, d.event_id))

    # ------------------------------------------------------------- helpers
    # ---------------------------------------------------------------- costs
    def record_cost(self, entry: CostEntry) -> None:
        _insert_once(self._costs, _cost_to_entity(entry))

    def costs(self, month: str, team: str | None = None) -> list[CostEntry]:
        query = "PartitionKey eq @month"
        parameters = {"month": month}
        if team is not None:  # the team's rows are one RowKey range: `<team>|...`
            query += " and RowKey ge @low and RowKey lt @high"
            parameters |= {"low": f"{team}|", "high": f"{team}}}"}  # "}" sorts right after "|"
        rows = self._costs.query_entities(query, parameters=parameters)
        return [_cost_from_entity(e) for e in rows]

    # ---------------------------------------------------------------- teams
    def get_team(self, name: str) -> Team | None:
        try:
            return _team_from_entity(self._teams.get_entity(_TEAMS, name))
        except ResourceNotFoundError:
            return None

    def put_team(self, team: Team) -> Team:
        return replace(team, etag=self._write(self._teams, _team_to_entity(team), team.etag, f"team {team.name}"))

    def delete_team(self, name: str) -> None:
        self._teams.delete_entity(_TEAMS, name)

    def list_teams(self) -> list[Team]:
        rows = self._teams.query_entities("PartitionKey eq @p", parameters={"p": _TEAMS})
        return sorted((_team_from_entity(e) for e in rows), key=lambda t: t.name)

    @staticmethod
    def _write(table: TableClient, entity: dict[str, Any], etag: str | None, what: str) -> str:
        """Create when `etag` is None, else replace only if unchanged. Returns the new ETag."""
        try:
            if etag is None:
                meta = table.create_entity(entity)
            else:
                meta = table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            raise ConcurrencyError(what) from None
        return str(meta["etag"])


def _batches(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """`items` in chunks of at most 100, Table Storage's limit on operations in one transaction."""
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _transact_or_one_by_one(
    table: TableClient, operation: str, entities: Sequence[dict[str, Any]], alone: Callable[[dict[str, Any]], None]
) -> None:
    """`operation` on entities of one partition, a transaction per 100; one refused (an entity done
    already, say) is done again entity by entity with `alone`, which must tolerate that."""
    for chunk in _batches(entities):
        try:
            table.submit_transaction([(operation, entity) for entity in chunk])
        except TableTransactionError:
            for entity in chunk:
                alone(entity)


def _in_states(states: Iterable[RunState], params: dict[str, Any]) -> str:
    """A filter for runs in one of `states`, its values added to `params`."""
    wanted = sorted(s.value for s in states)
    params.update({f"s{i}": state for i, state in enumerate(wanted)})
    return "(" + " or ".join(f"State eq @s{i}" for i in range(len(wanted))) + " )"  # the SDK needs a space before ")"


def _insert_once(table: TableClient, entity: dict[str, Any]) -> None:
    """Insert the row unless one with its keys is there already."""
    with contextlib.suppress(ResourceExistsError):
        table.create_entity(entity)


# Entities are flat: nested values are stored as JSON strings; datetimes as Edm.DateTime.
# Manifests are stored in their normalised form and read back through the model, so a field
# added later with a default is filled in on rows written before it existed.


def _manifest_columns(spec: JobManifest | None) -> dict[str, Any]:
    """A manifest's normalised JSON as `Manifest`, `Manifest1`, ...: a string property holds 64 KiB, 32K
    UTF-16 characters, and an entity 1 MiB (learn.microsoft.com/azure/storage/tables/scalability-targets;
    learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model). json.dumps
    writes ASCII, so a part of `_PART_CHARS` characters is 64,000 bytes, and a manifest within the
    domain's limit (`documents.MAX_CHARS`: 8 parts, 512,000 bytes) leaves the row room for the rest."""
    text = json.dumps(spec.normalised()) if spec is not None else ""
    parts = [text[i : i + _PART_CHARS] for i in range(0, len(text), _PART_CHARS)] or [""]
    return {
        "Manifest": parts[0],
        **{f"Manifest{n}": part for n, part in enumerate(parts[1:], start=1)},
        "ManifestParts": len(parts),
    }


def _manifest_text(e: Any) -> str:
    """The manifest JSON of a row, its parts joined (rows written before parts existed have one)."""
    parts = int(e.get("ManifestParts") or 1)
    return str(e.get("Manifest") or "") + "".join(str(e.get(f"Manifest{n}") or "") for n in range(1, parts))


def _manifest_from_json(text: str | None) -> JobManifest | None:
    """A run's manifest; REJECTED runs have none (older rows stored `{}`)."""
    return JobManifest.model_validate(json.loads(text)) if text and text != "{}" else None


def _utc(value: datetime | None) -> datetime | None:
    """A plain, UTC-aware datetime (the SDK returns its own subclass, naive or aware)."""
    if value is None:
        return None
    utc = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return datetime.combine(utc.date(), utc.time(), tzinfo=UTC)


def _job_to_entity(job: JobRecord) -> dict[str, Any]:
    return {
        "PartitionKey": job.name,
        "RowKey": "spec",
        **_manifest_columns(job.spec),
        "ManifestHash": job.manifest_hash,
        "UpdatedAt": job.updated_at,
        "WatchContainer": job.watch_container,
        "WatchPrefix": job.watch_prefix,
        "WatchSince": job.watch_since,
        "LastRunId": job.last_run_id,
    }


def _job_from_entity(e: Any) -> JobRecord:
    return JobRecord(
        name=e["PartitionKey"],
        spec=JobManifest.model_validate(json.loads(_manifest_text(e))),
        manifest_hash=e["ManifestHash"],
        updated_at=_utc(e["UpdatedAt"]) or datetime.now(UTC),
        watch_container=e.get("WatchContainer", ""),
        watch_prefix=e.get("WatchPrefix", ""),
        watch_since=_utc(e.get("WatchSince")),
        last_run_id=e.get("LastRunId", ""),
        etag=e.metadata["etag"],
    )


def run_entity(run: Run) -> dict[str, Any]:
    return {
        "PartitionKey": run.job,
        "RowKey": run.id,
        "State": run.state.value,
        "CreatedAt": run.created_at,
        "UpdatedAt": run.updated_at,
        "Trigger": run.trigger,
        "Cause": run.cause,
        "ManifestHash": run.manifest_hash,
        **_manifest_columns(run.spec),
        "Source": run.source,
        "Cluster": run.cluster,
        "BackendJobId": run.backend_job_id,
        "SnapshotId": run.snapshot_id,
        "Attempt": run.attempt,
        "WaitingReason": run.waiting_reason or "",
        "Error": run.error[:16000],
        # Bounded like `Error`, so the column stays under 64 KiB however many problems a manifest has.
        "Problems": json.dumps([[p.field, p.message[:_PROBLEM_CHARS]] for p in run.problems[:_PROBLEMS]]),
        "Metrics": json.dumps(run.metrics),
        "Seq": run.seq,
        "Last": json.dumps(run.last.to_json()) if run.last else "",
        "Correlation": run.correlation,
        "Team": run.team,
        "SubmittedBy": run.submitted_by,
        "Priority": run.priority,
        "PlacedAt": run.placed_at,
        "Rate": json.dumps(run.rate.to_json()) if run.rate else "",
        **_outbox_columns(run),
    }


def _outbox_columns(run: Run) -> dict[str, Any]:
    # `Unpublished` makes the backstop a filtered query. Details are cut, and kept as characters rather than
    # \u escapes (6 characters each), so the column stays under the 32K-character property limit
    # (MAX_PREEMPTION_ATTEMPTS_BOUND).
    staged = [s.to_json(max_detail=_OUTBOX_DETAIL) for s in run.outbox]
    return {"Outbox": json.dumps(staged, ensure_ascii=False), "Unpublished": bool(run.outbox)}


def _run_from_entity(e: Any) -> Run:
    return Run(
        id=e["RowKey"],
        job=e["PartitionKey"],
        state=RunState(e["State"]),
        created_at=_utc(e["CreatedAt"]) or datetime.now(UTC),
        updated_at=_utc(e["UpdatedAt"]) or datetime.now(UTC),
        trigger=e.get("Trigger", ""),
        cause=e.get("Cause", ""),
        manifest_hash=e.get("ManifestHash", ""),
        spec=_manifest_from_json(_manifest_text(e)),
        source=e.get("Source", ""),
        cluster=e.get("Cluster", ""),
        backend_job_id=e.get("BackendJobId", ""),
        snapshot_id=e.get("SnapshotId", ""),
        attempt=int(e.get("Attempt", 1)),
        waiting_reason=e.get("WaitingReason") or None,
        error=e.get("Error", ""),
        problems=_problems_from_json(e),
        metrics=json.loads(e.get("Metrics") or "{}"),
        seq=int(e.get("Seq", 0)),
        last=Transition.from_json(json.loads(e["Last"])) if e.get("Last") else None,
        correlation=e.get("Correlation") or e.get("Cause", ""),
        team=e.get("Team", ""),
        submitted_by=e.get("SubmittedBy", ""),
        priority=int(e.get("Priority", 0)),
        placed_at=_utc(e.get("PlacedAt")),
        rate=Rate.from_json(json.loads(e["Rate"])) if e.get("Rate") else None,
        outbox=tuple(Staged.from_json(s) for s in json.loads(e.get("Outbox") or "[]")),
        etag=e.metadata["etag"],
    )


@functools.cache
def copy_columns() -> list[str]:
    """What a reader of the `active` index needs of a copy: every column but the outbox.

    The outbox can grow to 64 KiB while the topic is down, and it is only ever published from the run
    itself (`publishing.drain`). Derived from the mapper, so a new column is never left behind.
    """
    sample = Run.create(job="j", state=RunState.ACCEPTED, at=datetime.now(UTC), trigger="http", cause="c")
    parts = [f"Manifest{n}" for n in range(1, _MANIFEST_PARTS)]  # a long manifest's other parts
    return [column for column in active_entity(sample) if column != "Outbox"] + parts


def _problems_from_json(e: Any) -> tuple[FieldProblem, ...]:
    """A REJECTED run's problems; a row stored before they were kept has its error as one, of the document."""
    if "Problems" not in e:
        return (FieldProblem(DOCUMENT, e["Error"]),) if e.get("State") == RunState.REJECTED and e.get("Error") else ()
    return tuple(FieldProblem(field, message) for field, message in json.loads(e["Problems"]))


def active_entity(run: Run) -> dict[str, Any]:
    """A run's row in the `active` index: a copy of its `runs` row, keyed for reading all active runs at once."""
    return run_entity(run) | {"PartitionKey": _ACTIVE, "Job": run.job}


def listed_entity(run: Run) -> dict[str, Any]:
    """A run's row in `runsbytime`: a copy of its `runs` row, in the partition of when it was made."""
    return run_entity(run) | {"PartitionKey": _bucket(run.id), "Job": run.job}


def _bucket(run_id: str) -> str:
    # A prefix of the run id: partitions sort as their runs do, newest first, and hold a run id prefix's matches.
    return run_id[:_BUCKET_DIGITS]


def _indexed_run_from_entity(e: Any) -> Run:
    """A run from its copy in an index (`active`, `runsbytime`): no ETag, so it is read again before it is saved."""
    return replace(_run_from_entity(e), job=e["Job"], etag=None)


def _seq_key(seq: int) -> str:
    return f"{seq:06d}"


def _transition_to_entity(run: Run, t: Transition) -> dict[str, Any]:
    return {
        "PartitionKey": run.id,
        "RowKey": _seq_key(t.seq),
        "Job": run.job,
        "From": t.from_state.value if t.from_state else "",
        "To": t.to_state.value,
        "Cause": t.cause,
        "At": t.at,
        "Applied": t.applied,
        "Detail": t.detail[:16000],
    }


def _transition_from_entity(e: Any) -> Transition:
    return Transition(
        seq=int(e["RowKey"]),
        from_state=RunState(e["From"]) if e.get("From") else None,
        to_state=RunState(e["To"]),
        cause=e.get("Cause", ""),
        at=_utc(e["At"]) or datetime.now(UTC),
        applied=bool(e.get("Applied", True)),
        detail=e.get("Detail", ""),
    )


def _cluster_to_entity(c: ClusterRecord) -> dict[str, Any]:
    return {
        "PartitionKey": c.backend,
        "RowKey": c.name,
        "DesiredNodes": c.desired_nodes,
        "ObservedNodes": c.observed_nodes,
        "ActiveRuns": c.active_runs,
        "LastScaleAction": c.last_scale_action,
        "LastScaleAt": c.last_scale_at,
        "ZeroAt": c.zero_at,
        "SecondsToZero": c.seconds_to_zero,
        "ZeroPublishedAt": c.zero_published_at,
    }


def _cluster_from_entity(e: Any) -> ClusterRecord:
    return ClusterRecord(
        backend=e["PartitionKey"],
        name=e["RowKey"],
        desired_nodes=int(e.get("DesiredNodes", 0)),
        observed_nodes=int(e.get("ObservedNodes", 0)),
        active_runs=_count(e.get("ActiveRuns")),
        last_scale_action=e.get("LastScaleAction", ""),
        last_scale_at=_utc(e.get("LastScaleAt")),
        zero_at=_utc(e.get("ZeroAt")),
        seconds_to_zero=e.get("SecondsToZero"),
        zero_published_at=_utc(e.get("ZeroPublishedAt")),
    )


def _count(value: Any) -> int:
    """The active-run count; rows written before it was a count hold a JSON list of run ids."""
    return len(json.loads(value)) if isinstance(value, str) else int(value or 0)


def _arrival_to_entity(a: Arrival) -> dict[str, Any]:
    return {"PartitionKey": a.job, "RowKey": a.key, "Blob": a.blob, "At": a.at, "ConsumedBy": a.consumed_by}


def _arrival_from_entity(e: Any) -> Arrival:
    return Arrival(
        job=e["PartitionKey"],
        key=e["RowKey"],
        blob=e.get("Blob", ""),
        at=_utc(e["At"]) or datetime.now(UTC),
        consumed_by=e.get("ConsumedBy", ""),
    )


def _dead_letter_from_entity(e: Any) -> DeadLetter:
    return DeadLetter(
        function=e["PartitionKey"],
        event_id=e["EventId"],
        event_type=e["EventType"],
        subject=e["Subject"],
        reason=e["Reason"],
        at=_utc(e["At"]) or datetime.now(UTC),
    )


def _model_to_entity(m: ModelVersion) -> dict[str, Any]:
    return {
        "PartitionKey": m.name,
        "RowKey": _seq_key(m.version),
        "RunId": m.run_id,
        "SnapshotId": m.snapshot_id,
        "ManifestHash": m.manifest_hash,
        "Artifact": m.artifact,
        "Metrics": json.dumps(m.metrics),
        "RegisteredAt": m.registered_at,
        "Promoted": m.promoted,
        "Gate": m.gate,
    }


def _model_from_entity(e: Any) -> ModelVersion:
    return ModelVersion(
        name=e["PartitionKey"],
        version=int(e["RowKey"]),
        run_id=e.get("RunId", ""),
        snapshot_id=e.get("SnapshotId", ""),
        manifest_hash=e.get("ManifestHash", ""),
        artifact=e.get("Artifact", ""),
        metrics=json.loads(e.get("Metrics") or "{}"),
        registered_at=_utc(e["RegisteredAt"]) or datetime.now(UTC),
        promoted=bool(e.get("Promoted", False)),
        gate=e.get("Gate", ""),
    )


def _cost_to_entity(c: CostEntry) -> dict[str, Any]:
    return {
        "PartitionKey": c.month,
        "RowKey": f"{c.team}|{c.run_id}",
        "RunId": c.run_id,
        "Job": c.job,
        "Team": c.team,
        "SubmittedBy": c.submitted_by,
        "EndedAt": c.ended_at,
        "BilledSeconds": c.billed_seconds,
        "GpuSeconds": c.gpu_seconds,
        "Cost": c.cost,
        "VmSize": c.vm_size,
        "Tier": c.tier,
    }


def _cost_from_entity(e: Any) -> CostEntry:
    return CostEntry(
        run_id=e["RunId"],
        job=e["Job"],
        team=e["Team"],
        submitted_by=e.get("SubmittedBy", ""),
        ended_at=_utc(e["EndedAt"]) or datetime.now(UTC),
        billed_seconds=float(e["BilledSeconds"]),
        gpu_seconds=float(e["GpuSeconds"]),
        cost=float(e["Cost"]),
        vm_size=e.get("VmSize", ""),
        tier=e.get("Tier", ""),
    )


def _team_to_entity(t: Team) -> dict[str, Any]:
    return {
        "PartitionKey": _TEAMS,
        "RowKey": t.name,
        "Gpus": t.gpus,
        "GpuHours": t.gpu_hours,
        "MonthlyBudget": t.monthly_budget,
        "DefaultPriority": t.default_priority,
        "MaxPriority": t.max_priority,
        "Weight": t.weight,
    }


def _team_from_entity(e: Any) -> Team:
    def number(name: str) -> float | None:
        return None if e.get(name) is None else float(e[name])

    gpus = number("Gpus")
    return Team(
        name=e["RowKey"],
        gpus=None if gpus is None else int(gpus),
        gpu_hours=number("GpuHours"),
        monthly_budget=number("MonthlyBudget"),
        default_priority=int(e.get("DefaultPriority", 0)),
        max_priority=int(e.get("MaxPriority", 0)),
        weight=float(e.get("Weight", 1.0)),
        etag=e.metadata["etag"],
    )
