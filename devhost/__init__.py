"""A local Azure Functions host: runs a `FunctionApp` with HTTP, Event Grid and timer triggers.

Core Tools cannot be installed here and Event Grid has no emulator, so this package
serves the app's HTTP triggers, implements the Functions host's Event Grid webhook,
runs timers on a short fixed interval, and turns Azurite uploads into real-schema
`BlobCreated` events delivered over HTTP with Event Grid's at-least-once retries.

It is a development tool, never deployed (`.funcignore` leaves it out). The host modules
know nothing of aztrain: they are given the app, a connection string and the project
root, and sign requests in through the function they are given. Only `localstack` (aztrain's
stack: Azurite, storage set-up, this host), `demo` and `identity` (local users, signed in as App
Service Authentication would) import the core, and only aztrain's wiring and tests import them.
"""

from devhost.azurite import Azurite, AzuriteError, azurite_connection_string
from devhost.blob_events import Subscription, blob_created_event
from devhost.host import DevHost

__all__ = [
    "Azurite",
    "AzuriteError",
    "DevHost",
    "Subscription",
    "azurite_connection_string",
    "blob_created_event",
]
