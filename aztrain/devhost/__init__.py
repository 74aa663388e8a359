"""A local Azure Functions host: runs a `FunctionApp` with HTTP, Event Grid and timer triggers.

Core Tools cannot be installed here and Event Grid has no emulator, so this package
serves the app's HTTP triggers, implements the Functions host's Event Grid webhook,
runs timers on a short fixed interval, and turns Azurite uploads into real-schema
`BlobCreated` events delivered over HTTP with Event Grid's at-least-once retries.
"""

from aztrain.devhost.azurite import DEFAULT_AZURITE_BINARY, Azurite, AzuriteError, azurite_connection_string
from aztrain.devhost.blob_events import Subscription, blob_created_event
from aztrain.devhost.host import DevHost

__all__ = [
    "DEFAULT_AZURITE_BINARY",
    "Azurite",
    "AzuriteError",
    "DevHost",
    "Subscription",
    "azurite_connection_string",
    "blob_created_event",
]
