"""HTTP triggers for what a run produced: the list of its output files, and one file's bytes (the model).

They are routes of `functions.http_api` (its blueprint, its auth, its OpenAPI document), kept in a module
of their own: `aztrain download` and the dashboard's download links read them.
"""

from __future__ import annotations

import azure.functions as func

from aztrain.api import models as api
from aztrain.service.bootstrap import control_plane
from aztrain.service.run_outputs import OutputTooLarge
from aztrain.service.views import dump
from functions.http_api import RUN_ID, _json, _param, _route, _run, _run_route
from functions.openapi import PathParameter
from functions.problems import ApiProblem

OUTPUT = PathParameter(api.OUTPUT_NAME_PATTERN, "the name of a file in the run's outputs folder, e.g. model.pt")


@_run_route("GET", "/outputs", "The files the run wrote to its outputs folder: model, metrics", {200: api.OutputList})
def run_output_files(req: func.HttpRequest) -> func.HttpResponse:
    run = _run(req)
    service = control_plane()
    container = service.settings.runs_container
    files = [
        api.OutputFile(name=b.name.rsplit("/", 1)[-1], size=b.size, path=f"{container}/{b.name}")
        for b in service.output_files(run)
    ]
    return _json(dump(api.OutputList(run_id=run.id, files=files)))


@_route(
    "GET",
    "runs/{run_id}/outputs/{name}",
    "One output file of the run, as an attachment (`aztrain download`)",
    {200: "application/octet-stream"},
    errors=(400, 404, 409, 413),
    path={"run_id": RUN_ID, "name": OUTPUT},
)
def run_output_file(req: func.HttpRequest) -> func.HttpResponse:
    name = _param(req, "name", OUTPUT)
    run = _run(req)
    try:
        body = control_plane().read_output(run, name)
    except OutputTooLarge as exc:
        raise ApiProblem(413, "output-too-large", str(exc)) from None
    disposition = f'attachment; filename="{name}"'  # the pattern leaves no quote or separator in it
    return func.HttpResponse(
        body, status_code=200, mimetype="application/octet-stream", headers={"Content-Disposition": disposition}
    )
