"""Azure Functions entry point: one FunctionApp, six blueprints (and the API's 405s). Nothing else belongs here."""

import azure.functions as func

from functions import (  # noqa: F401 (outputs: on http_api.bp)
    blob_queue,
    dashboard,
    events,
    http_api,
    not_allowed,
    outputs,
    reconcile,
    run_steps,
)

# Once every module has declared its HTTP API routes (outputs too, on http_api.bp): a 405 for each
# method a path leaves out.
not_allowed.register(http_api.bp, http_api.OPERATIONS)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api.bp)
app.register_functions(events.bp)
app.register_functions(blob_queue.bp)
app.register_functions(run_steps.bp)
app.register_functions(reconcile.bp)
app.register_functions(dashboard.bp)
