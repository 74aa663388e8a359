"""HTTP triggers for what a run produced: the list of its output files, and one file's bytes (the model).

They are routes of `functions.http_api` (its blueprint, its auth, its OpenAPI document), kept in a module
of their own: `aztrain download` and the dashboard's download links read them.
"""

from __future__ import annotations

import azure.functions as func

from aztrain.api import models as api
from aztrain.service.queries import OutputTooLarge
from functions.http_api import RUN_ID, _json, _param, _queries, _route, _run_ref, _run_route
from functions.openapi import PathParameter
from functions.problems import ApiProblem

OUTPUT = PathParameter(api.OUTPUT_NAME_PATTERN, "the name of a file in the run's outputs folder, e.g. model.pt")


@_run_route("GET", "/outputs", "The files the run wrote to its outputs folder: model, metrics", {200: api.OutputList})
def run_output_files(req: func.HttpRequest) -> func.HttpResponse:
    return _json(_queries().output_files(_run_ref(req)))


@_route(
    "GET",
    "runs/{run_id}/outputs/{name}",
    "One output file of the run, as an attachment (`aztrain download`, the dashboard's links)",
    {200: "application/octet-stream"},
    errors=(400, 404, 409, 413),
    path={"run_id": RUN_ID, "name": OUTPUT},
)
def run_output_file(req: func.HttpRequest) -> func.HttpResponse:
    name = _param(req, "name", OUTPUT)
    try:
        body = _queries().output(_run_ref(req), name)
    except OutputTooLarge as exc:
        raise ApiProblem(413, "output-too-large", str(exc)) from None
    disposition = f'attachment; filename="{name}"'  # the name's pattern leaves no quote or separator in it
    return func.HttpResponse(
        body, status_code=200, mimetype="application/octet-stream", headers={"Content-Disposition": disposition}
    )
