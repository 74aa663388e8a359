"""A long history of finished runs, written straight to their tables in entity-group transactions.

What a reader of the run list sees (each run's `runs` row and its copy in `runsbytime`), in seconds for
10,000 runs where submitting them through the service one by one would take minutes. The runs have no
history rows: they are listed, never opened.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import TableClient, TableServiceClient

from aztrain.adapters.storage.tables import listed_entity, run_entity
from aztrain.domain.manifest import JobManifest, parse_manifest
from aztrain.domain.runs import Run, RunState
from aztrain.service.settings import Settings

MANIFEST = """apiVersion: aztrain/v1
kind: TrainingJob
name: {name}
data: {{container: datasets, prefix: {name}/}}
"""
#: The jobs the runs belong to, in turn: `history-0` … `history-19`.
JOBS = 20
#: Table Storage's limit on operations in one entity-group transaction.
_BATCH = 100
#: Transactions in flight at once.
_SENDERS = 4


def finished_runs(count: int, *, newest: datetime, every: timedelta = timedelta(minutes=1)) -> list[Run]:
    """`count` COMPLETED runs of the `JOBS` jobs, one made every `every`, the newest at `newest`."""
    specs = [parse_manifest(MANIFEST.format(name=f"history-{j}")) for j in range(JOBS)]
    return [_completed(specs[i % JOBS], newest - i * every) for i in range(count)]


def _completed(spec: JobManifest, at: datetime) -> Run:
    run = Run.create(
        job=spec.name,
        state=RunState.COMPLETED,
        at=at,
        trigger="http",
        cause="history",
        spec=spec,
        manifest_hash=spec.content_hash,
    )
    return replace(run, outbox=())  # its events went out long ago


def write_history(settings: Settings, runs: list[Run]) -> None:
    """Store the runs' rows as `add_run` would, 100 per transaction (one partition each)."""
    service = TableServiceClient.from_connection_string(settings.storage_connection_string)
    tables: dict[str, Callable[[Run], dict[str, Any]]] = {"runs": run_entity, "runsbytime": listed_entity}
    batches: list[tuple[TableClient, list[dict[str, Any]]]] = []
    for table, entity in tables.items():
        client = service.get_table_client(settings.table_prefix + table)
        partitions: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for run in runs:
            row = entity(run)
            partitions[row["PartitionKey"]].append(row)
        batches += [(client, rows[i : i + _BATCH]) for rows in partitions.values() for i in range(0, len(rows), _BATCH)]
    with ThreadPoolExecutor(_SENDERS) as pool:
        list(pool.map(lambda batch: batch[0].submit_transaction([("upsert", row) for row in batch[1]]), batches))
