"""The local stack: Azurite + storage set-up + the dev host serving `function_app`.

What `aztrain dev`, `aztrain demo` and the end-to-end tests run. Event Grid
subscriptions here mirror the ones `infra/` creates in Azure.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from aztrain.adapters.blobs import BlobDataStore
from aztrain.bootstrap import build_data_store, ensure_storage
from aztrain.devhost import Azurite, DevHost, Subscription, azurite_connection_string
from aztrain.settings import PROJECT_ROOT, Settings, load_local_settings

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def subscriptions(settings: Settings) -> list[Subscription]:
    """Event Grid subscriptions as deployed: manifests in the jobs container, and every data container."""
    blobs = "/blobServices/default/containers/{}/blobs/"
    manifests = Subscription(
        name="manifests",
        function_name="on_blob_created",
        container=settings.jobs_container,
        subject_begins_with=blobs.format(settings.jobs_container) + settings.manifests_prefix,
        subject_ends_with=MANIFEST_SUFFIXES,
    )
    data = [
        Subscription(
            name=f"data-{container}",
            function_name="on_blob_created",
            container=container,
            subject_begins_with=blobs.format(container),
        )
        for container in settings.data_containers
    ]
    return [manifests, *data]


class LocalStack:
    """Start with `with LocalStack(...) as stack:`; everything started is stopped on exit."""

    def __init__(self, *, state_dir: Path, port: int, azurite_port: int, timer_interval: float) -> None:
        self.state_dir = state_dir.resolve()
        self.port = port
        self.azurite_port = azurite_port
        self.timer_interval = timer_interval
        self._azurite: Azurite | None = None
        self._host: DevHost | None = None
        self.data: BlobDataStore

    @property
    def url(self) -> str:
        assert self._host is not None, "the stack is not started"
        return self._host.url

    def __enter__(self) -> LocalStack:
        load_local_settings(PROJECT_ROOT / "local.settings.json")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._azurite = Azurite(
            location=self.state_dir / "azurite",
            blob_port=self.azurite_port,
            queue_port=self.azurite_port + 1,
            table_port=self.azurite_port + 2,
        )
        self._azurite.start()
        connection_string = azurite_connection_string(
            blob_port=self.azurite_port, queue_port=self.azurite_port + 1, table_port=self.azurite_port + 2
        )
        # The Functions code reads settings from the environment, as it does in Azure.
        os.environ["AZTRAIN_STORAGE_CONNECTION_STRING"] = connection_string
        os.environ.setdefault("AZTRAIN_LOCAL_STATE_DIR", str(self.state_dir / "local"))
        settings = Settings.from_env()
        ensure_storage(settings)
        self.data = build_data_store(settings)

        from function_app import app  # imported only now, with settings in place

        self._host = DevHost(
            app,
            connection_string=connection_string,
            subscriptions=subscriptions(settings),
            port=self.port,
            timer_interval=self.timer_interval,
        )
        self._host.start()
        return self

    def serve_forever(self) -> None:
        assert self._host is not None
        self._host.serve_forever()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._host is not None:
            self._host.stop()
        if self._azurite is not None:
            self._azurite.stop()
