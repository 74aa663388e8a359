"""Azure Functions entry point: one FunctionApp, five blueprints. Nothing else belongs here."""

import azure.functions as func

from functions import blob_queue, dashboard, events, http_api, outputs, reconcile  # noqa: F401 (outputs: on http_api.bp)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api.bp)
app.register_functions(events.bp)
app.register_functions(blob_queue.bp)
app.register_functions(reconcile.bp)
app.register_functions(dashboard.bp)
