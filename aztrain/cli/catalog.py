"""`aztrain jobs | clusters | window | models | lineage`, and the offline `validate | plan | schema`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
import yaml
from rich.text import Text

from aztrain.api import models as api
from aztrain.cli.app import JsonOption, ManifestArgument, app, begin, examples
from aztrain.cli.output import ExitCode, clip, headline_metrics, moment, origin, summarise_metrics
from aztrain.domain.compute_rules import compute_rules
from aztrain.domain.errors import ManifestError
from aztrain.domain.layout import short_run_id
from aztrain.domain.manifest import manifest_schema, parse_manifest
from aztrain.service.settings import PROJECT_ROOT, Settings, load_local_settings


@app.command(epilog=examples("aztrain jobs", "aztrain jobs --json"))
def jobs(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Registered jobs: what each watches, its manifest hash and its last run."""
    session, out = begin(ctx, as_json)
    out.listing("jobs", session.client.jobs(), ("JOB", "WATCHES", "LAST RUN", "MANIFEST", "UPDATED"), _job_row)


def _job_row(job: api.JobView) -> list[str | Text]:
    last = short_run_id(job.last_run_id) if job.last_run_id else "—"
    return [job.name, job.watch or "—", last, job.manifest_hash[:12], moment(job.updated_at)]


@app.command(epilog=examples("aztrain clusters", "aztrain clusters --json"))
def clusters(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Compute clusters: desired vs observed nodes, active runs, the last scale action."""
    session, out = begin(ctx, as_json)
    columns = ("BACKEND", "CLUSTER", "DESIRED", "OBSERVED", "ACTIVE RUNS", "LAST SCALE", "TO ZERO")
    out.listing("clusters", session.client.clusters(), columns, _cluster_row)
    out.note(SERVERLESS_NOTE)


#: What `aztrain clusters` cannot show: serverless runs have no cluster, so no row here.
SERVERLESS_NOTE = (
    "runs on serverless profiles (e.g. serverless-t4) have no cluster and no row here: their nodes are "
    "provisioned for each run and released when it ends, so they leave no idle tail (aztrain runs lists them)"
)


def _cluster_row(c: api.ClusterView) -> list[str | Text]:
    zero = f"{c.seconds_to_zero:.1f} s" if c.seconds_to_zero is not None else "—"
    return [
        c.backend,
        c.name,
        str(c.desired_nodes),
        str(c.observed_nodes),
        str(c.active_runs),
        c.last_scale_action or "—",
        zero,
    ]


@app.command(epilog=examples("aztrain deadletters", "aztrain deadletters --json"))
def deadletters(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Events the control plane could never act on (acknowledged, not retried), each with the reason."""
    session, out = begin(ctx, as_json)
    columns = ("AT", "FUNCTION", "EVENT", "SUBJECT", "REASON")
    out.listing("deadletters", session.client.dead_letters(), columns, _dead_letter_row)


def _dead_letter_row(d: api.DeadLetterView) -> list[str | Text]:
    return [moment(d.at), d.function, clip(d.event_id, 36), clip(d.subject, 60), d.reason]


@app.command(epilog=examples("aztrain window digits-classifier"))
def window(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(metavar="JOB", help="A job that watches a data prefix.")],
    as_json: JsonOption = False,
) -> None:
    """A watched job's pending retraining window: arrivals, every blocker at once, and what happens next."""
    session, out = begin(ctx, as_json)
    found = session.client.window(job)
    if as_json:
        out.json(found)
        return
    when = f", fires at {moment(found.fires_at)}" if found.fires_at and found.action == "wait" else ""
    # With blockers, each gets its own line below: the headline says only what the window does.
    headline = found.action if found.blockers else found.reason
    out.line(f"{found.job}: {found.arrivals} new blob(s) pending — {headline}{when}")
    for blocker in found.blockers:
        until = f" (until {moment(blocker.until)})" if blocker.until else ""
        out.line(f"  - {blocker.reason}{until}")  # each reason names its kind ("debouncing: ...")
    if found.next:
        out.line(f"  next: {found.next}")


@app.command(epilog=examples("aztrain models", "aztrain models digits-classifier --json"))
def models(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="[NAME]", help="Only this model's versions.", show_default=False)] = "",
    as_json: JsonOption = False,
) -> None:
    """Registered model versions, all or of one model (promoted ones marked)."""
    session, out = begin(ctx, as_json)
    if as_json and name:  # the API's document of one model: {name, current, versions}
        out.json(session.client.model(name))
        return
    columns = ("MODEL", "VERSION", "PROMOTED", "RUN", "METRICS", "GATE")
    out.listing("models", session.client.models(name), columns, _model_row)


def _model_row(m: api.ModelView) -> list[str | Text]:
    promoted = "yes" if m.promoted else ""
    metrics = summarise_metrics(m.metrics, 40) or "—"
    return [m.name, str(m.version), promoted, short_run_id(m.run_id), metrics, clip(m.gate, 50)]


def _model_ref(value: str) -> str:
    name, sep, number = value.rpartition("@")
    if not sep or not name or not number.isdigit():
        raise typer.BadParameter("name the model as NAME@VERSION, e.g. digits-classifier@3")
    return value


@app.command(epilog=examples("aztrain lineage digits-classifier@3"))
def lineage(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(parser=_model_ref, metavar="NAME@VERSION", help="A model version.")],
    as_json: JsonOption = False,
) -> None:
    """Where a model version came from: model → run → data snapshot → blobs."""
    session, out = begin(ctx, as_json)
    name, _, number = model.rpartition("@")
    found = session.client.lineage(name, int(number))
    if as_json:
        out.json(found)
        return
    version, run, snap = found.model, found.run, found.snapshot
    promoted = "(promoted) " if version.promoted else ""
    out.line(f"model    {version.name}@{version.version}  {promoted}{version.artifact}")
    out.line(f"  run    {run.short_id}  {run.state}  {origin(run)}")
    out.line(f"         manifest {run.manifest_hash[:12]}  metrics {headline_metrics(version.metrics)}")
    code = found.code
    out.line(f"  code   {f'code snapshot {code.id}, {len(code.files)} file(s)' if code else 'the built-in trainer'}")
    out.line(f"  data   {snap.id}  {len(snap.blobs)} blob(s) in {snap.container}/{snap.prefix}")
    if found.data_read is None:
        out.line("         the trainer did not report which files it read")
    else:
        out.line(f"         the trainer read {sum(1 for b in snap.blobs if b.read)} of them")
    for blob in snap.blobs:
        mark = {True: "read", False: "NOT READ"}.get(blob.read, "") if blob.read is not None else ""
        out.line(f"    {blob.name}  {blob.size} B  etag {blob.etag}  {mark}".rstrip())


# ---- manifests, offline -------------------------------------------------------------------------------------


@app.command(epilog=examples("aztrain validate examples/digits.yaml", "aztrain validate job.yaml --normalised"))
def validate(
    ctx: typer.Context,
    manifest: ManifestArgument,
    normalised: Annotated[
        bool, typer.Option("--normalised", help="Also print the normalised manifest (defaults filled).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check a manifest offline as the app would: every problem at once, its compute against the app's backend."""
    _, out = begin(ctx, as_json)
    settings_file = PROJECT_ROOT / "local.settings.json"
    load_local_settings(settings_file)  # the same settings as the app and `plan`: its backend and profiles
    settings = Settings.from_env()
    check, rules = compute_rules(
        settings.backend,
        profiles_setting=settings.compute_profiles,
        allowed=settings.allowed_profiles,
        local_cluster_nodes=settings.local_cluster_nodes,
    )
    read_from = str(settings_file) if settings_file.is_file() else "the environment (no local.settings.json)"
    checked = f"compute checked as {rules} decides; settings from {read_from}; AZTRAIN_BACKEND=azureml|local chooses"
    try:
        spec = parse_manifest(manifest.read_bytes(), source=str(manifest), compute_check=check)
    except ManifestError as exc:
        if as_json:
            out.json(
                {"file": str(manifest), "valid": False, "problems": [str(p) for p in exc.problems], "checked": checked}
            )
        else:
            out.errors.print(f"{manifest}: invalid", markup=False)
            for problem in exc.problems:
                out.errors.print(f"  - {problem}", markup=False, soft_wrap=True)
            out.note(checked)
        raise typer.Exit(ExitCode.FAILED) from None
    if as_json:
        out.json(
            {
                "file": str(manifest),
                "valid": True,
                "job": spec.name,
                "hash": spec.content_hash,
                "problems": [],
                "checked": checked,
                "normalised": spec.normalised(),
            }
        )
        return
    out.line(f"{manifest}: valid (job {spec.name}, hash {spec.content_hash[:12]})")
    out.note(checked)
    if normalised:
        out.json(spec.normalised())


#: What `plan` prints for the job's code folder: a temp folder of this machine means nothing to the reader.
TRAINER_CODE = "<trainer-code>"


@app.command(epilog=examples("aztrain plan examples/digits.yaml", "aztrain plan job.yaml --json"))
def plan(ctx: typer.Context, manifest: ManifestArgument, as_json: JsonOption = False) -> None:
    """The Azure ML compute and command job (YAML) a manifest becomes, offline."""
    from aztrain.service.plan import render_plan  # only this command loads azure.ai.ml

    _, out = begin(ctx, as_json)
    load_local_settings(PROJECT_ROOT / "local.settings.json")  # the same profiles and environment as the app
    try:
        rendered = render_plan(manifest.read_bytes(), Settings.from_env())
    except ManifestError as exc:
        out.error(f"{manifest}: cannot run on Azure ML", problems=[str(p) for p in exc.problems], code=ExitCode.FAILED)
        raise typer.Exit(ExitCode.FAILED) from None
    header = [line for line in rendered.splitlines() if line.startswith("#")]
    compute, job = yaml.safe_load_all(rendered)
    job["code"] = TRAINER_CODE
    if as_json:
        out.json({"compute": compute, "job": job})
        return
    header.append(f"# {TRAINER_CODE} is the trainer package (trainer/*.py), uploaded as a code snapshot on submit.")
    sys.stdout.write(
        "\n".join(header) + "\n" + yaml.safe_dump_all([compute, job], sort_keys=False, explicit_start=True)
    )


@app.command(epilog=examples("aztrain schema > manifest.schema.json"))
def schema(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The manifest's JSON Schema (always JSON; --json is accepted for uniformity)."""
    _, out = begin(ctx, as_json)
    out.json(manifest_schema())
