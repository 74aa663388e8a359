"""The first page of `GET /api/runs` at 10, 1,000 and 10,000 runs in history: its time and storage requests.

    .venv/bin/python bench/run_list.py [--history 10,1000,10000] [--reads 20] [--azurite-port 10040]

The history (finished runs of 20 jobs, one a minute) is written straight to the tables in entity-group
transactions (`bench/history.py`), growing between figures; each figure is the median and p99 of
`--reads` requests over real HTTP to the dev host serving `function_app` in this process, without a
filter and with `?job=`, with the Table requests one page cost (counted on the wire). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aztrain.service.bootstrap import ensure_storage
from aztrain.service.settings import AZURITE_CONNECTION_STRING, PROJECT_ROOT, Settings
from bench.control_plane import percentiles
from bench.history import finished_runs, write_history
from bench.storage_calls import StorageCalls
from devhost import Azurite, azurite_connection_string

NEWEST = datetime(2026, 6, 1, tzinfo=UTC)
PAGES = {"all": "/api/runs", "one_job": "/api/runs?job=history-3"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", default="10,1000,10000", help="runs in history at each figure, growing")
    parser.add_argument("--reads", type=int, default=20, help="first-page requests per figure")
    parser.add_argument("--azurite-port", type=int, default=10040)
    args = parser.parse_args()
    port = args.azurite_port
    connection_string = azurite_connection_string(
        AZURITE_CONNECTION_STRING, blob_port=port, queue_port=port + 1, table_port=port + 2
    )
    settings = Settings(storage_connection_string=connection_string, table_prefix="bench")
    location = Path(tempfile.mkdtemp(prefix="aztrain-bench-list-"))
    figures = []
    try:
        with (
            Azurite(connection_string=connection_string, location=location, project_root=PROJECT_ROOT),
            StorageCalls() as calls,
        ):
            os.environ.update(
                AZTRAIN_STORAGE_CONNECTION_STRING=connection_string,
                AZTRAIN_TABLE_PREFIX=settings.table_prefix,
                AZTRAIN_LOCAL_STATE_DIR=str(location / "state"),
            )
            ensure_storage(settings)
            import function_app
            from devhost.host import DevHost
            from devhost.identity import LocalUsers

            sign_in = LocalUsers().signed_in  # no users file: the local admin, as `aztrain dev`
            with DevHost(
                function_app.app, connection_string=connection_string, port=0, timer_interval=None, sign_in=sign_in
            ) as dev:
                written = 0
                for history in (int(n) for n in args.history.split(",")):
                    older = finished_runs(history - written, newest=NEWEST - timedelta(minutes=written))
                    write_history(settings, older)
                    written = history
                    figure: dict[str, Any] = {"runs_in_history": history}
                    for name, path in PAGES.items():
                        figure[name] = first_page(dev.url + path, args.reads, calls, port + 2)
                    figures.append(figure)
                    print(json.dumps(figure), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(location, ignore_errors=True)
    print(json.dumps({"first_page_of_runs": figures}, indent=2))


def first_page(url: str, reads: int, calls: StorageCalls, table_port: int) -> dict[str, Any]:
    """Milliseconds per first page (p50, p99), the runs on it, and the Table requests one page cost."""
    seconds, requests, shown = [], set(), 0
    for _ in range(reads):
        before, started = calls.total(table_port), time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as reply:
            shown = len(json.loads(reply.read())["runs"])
        seconds.append(time.perf_counter() - started)
        requests.add(calls.total(table_port) - before)
    return {"ms": percentiles(seconds), "runs": shown, "table_requests": sorted(requests)}


if __name__ == "__main__":
    main()
