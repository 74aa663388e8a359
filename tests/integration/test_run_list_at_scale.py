"""The first page of runs costs the same at any history: 10 runs, then 10,000, on Azurite, counted on the wire.

The history is written straight to the tables in entity-group transactions (`bench/history.py`); the pages
are read over real HTTP from the dev host, whose storage requests are counted as the SDK sends them.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aztrain.service.settings import Settings
from bench.history import finished_runs, write_history
from bench.storage_calls import StorageCalls
from tests.apps import hosted_app

pytestmark = pytest.mark.azurite

NEWEST = datetime(2026, 6, 1, tzinfo=UTC)
#: The first page without a filter, and of one job.
PAGES = ("/api/runs", "/api/runs?job=history-3")


def table_port(connection_string: str) -> int:
    endpoint = re.search(r"TableEndpoint=([^;]+)", connection_string)
    assert endpoint, connection_string
    return urlsplit(endpoint.group(1)).port or 0


def test_the_first_page_of_runs_costs_the_same_requests_at_10_and_at_10000_runs(azurite: str, tmp_path: Path) -> None:
    prefix = "scale" + uuid.uuid4().hex[:8]
    settings = Settings(storage_connection_string=azurite, table_prefix=prefix)
    port = table_port(azurite)
    with StorageCalls() as calls, hosted_app(azurite, table_prefix=prefix, state_dir=tmp_path) as (host, _):

        def cost(path: str) -> tuple[int, list[str]]:
            before = calls.total(port)
            with urllib.request.urlopen(host.url + path, timeout=30) as reply:
                page = json.loads(reply.read())
            return calls.total(port) - before, [run["id"] for run in page["runs"]]

        write_history(settings, finished_runs(10, newest=NEWEST))
        few = {path: cost(path) for path in PAGES}
        # 9,990 older runs: a week of history, the ten above still the newest.
        write_history(settings, finished_runs(9_990, newest=NEWEST - timedelta(minutes=10)))
        many = {path: cost(path) for path in PAGES}

    assert {path: requests for path, (requests, _) in many.items()} == {path: n for path, (n, _) in few.items()}
    first_page = many["/api/runs"][1]
    assert len(first_page) == 50 and first_page == sorted(first_page)  # a full page, newest first
    assert first_page[:10] == few["/api/runs"][1]  # the ten newest come first
    assert len(many["/api/runs?job=history-3"][1]) == 50
