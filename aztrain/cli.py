"""`aztrain` command line: run the local stack, submit and follow jobs, read logs, upload data, check manifests."""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from typer import _click as click
from typer._click.exceptions import NoSuchOption  # typer vendors click; its parse errors are these
from typer.core import TyperGroup

from aztrain import cli_config
from aztrain.cli_follow import RunFollower, WaitTimedOut, follow_log
from aztrain.cli_output import (
    STATE_EXIT,
    STATE_STYLE,
    ExitCode,
    Out,
    UploadBar,
    clip,
    epoch_line,
    outcome_line,
    outputs_lines,
    state_text,
    summarise_metrics,
    transition_line,
)
from aztrain.client import AmbiguousRunId, ApiError, ApiUnreachable, Client, LogChunk
from aztrain.errors import AztrainError, ManifestError
from aztrain.manifest import manifest_schema, parse_duration, parse_manifest
from aztrain.runs import RunState
from aztrain.settings import PROJECT_ROOT, Settings, load_local_settings

EXIT_CODES_HELP = "\n\n".join(
    [
        "[bold]Exit codes[/bold]",
        "\n".join(
            [
                "  0  done; a followed run COMPLETED",
                "  1  the run FAILED; an invalid manifest (validate, plan); a failed upload",
                "  2  usage: unknown option, bad value, ambiguous run id prefix",
                "  3  the run was CANCELED",
                "  4  the manifest was REJECTED by the API",
                "  5  --timeout passed before the run ended (it goes on)",
                "  6  the API answered with an error (no such run, conflict, server error)",
                "  7  the API could not be reached",
                "130  interrupted (Ctrl-C); a followed run goes on",
            ]
        ),
        "Connection: flags, then environment (AZTRAIN_URL, AZTRAIN_FUNCTION_KEY, ...), then the config file "
        "($AZTRAIN_CONFIG or ~/.config/aztrain/config.toml), then the local stack. Docs: docs/cli.md",
    ]
)


class _Commands(TyperGroup):
    """A mistyped option is answered with the subcommand's usage and a "did you mean"."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NoSuchOption as exc:
            if exc.possibilities:
                exc.message = f"No such option: {exc.option_name}. Did you mean {' or '.join(exc.possibilities)}?"
                exc.possibilities = None
            raise


app = typer.Typer(
    name="aztrain",
    cls=_Commands,
    help=__doc__,
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)

#: The answer of the command being run, so `main` reports errors in the form (JSON or text) it asked for.
_out = Out()


@dataclass
class Session:
    """The global options, and the connection and API client they lead to (resolved on first use)."""

    flags: dict[str, str | None]
    config: Path | None = None
    extra_flags: dict[str, str | None] = field(default_factory=dict)

    @cached_property
    def connection(self) -> cli_config.Connection:
        return cli_config.resolve({**self.flags, **self.extra_flags}, config=self.config)

    @cached_property
    def client(self) -> Client:
        return Client(self.connection.url, key=self.connection.function_key)


def _begin(ctx: typer.Context, as_json: bool) -> tuple[Session, Out]:
    global _out
    _out = Out(as_json=as_json)
    session: Session = ctx.obj
    return session, _out


def _examples(*lines: str) -> str:
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(f"  [cyan]{line}[/cyan]" for line in lines)


def _duration(value: str | int) -> int:
    try:
        return parse_duration(int(value) if str(value).isdigit() else str(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _states(value: str) -> str:
    """Check `RUNNING,FAILED`-style state lists here, so a typo is a usage error with the choices named."""
    names = [s.strip().upper() for s in value.split(",") if s.strip()]
    known = [s.value for s in RunState]
    wrong = [n for n in names if n not in known]
    if wrong:
        raise typer.BadParameter(f"unknown state(s) {', '.join(wrong)}; choose from {', '.join(known)}")
    return ",".join(names)


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document (shapes: docs/cli.md).")]
TimeoutOption = Annotated[
    int,
    typer.Option(
        parser=_duration,
        metavar="DURATION",
        show_default="1h",
        help="How long to follow the run: 90s, 10m, 2h, 1h30m. The run goes on after it.",
    ),
]
RunIdArgument = Annotated[
    str, typer.Argument(metavar="RUN", help="Run id, or a unique prefix of at least 6 characters.")
]
ManifestArgument = Annotated[
    Path,
    typer.Argument(
        exists=True, dir_okay=False, readable=True, metavar="MANIFEST", help="Manifest file (YAML or JSON)."
    ),
]
ConnectionStringOption = Annotated[
    str | None,
    typer.Option(
        "--connection-string",
        help="Storage connection string. (env AZTRAIN_STORAGE_CONNECTION_STRING; default: the local Azurite)",
        show_default=False,
    ),
]
AccountUrlOption = Annotated[
    str | None,
    typer.Option(
        "--account-url",
        help="Blob account URL, e.g. https://ACCOUNT.blob.core.windows.net: sign in with DefaultAzureCredential "
        "(az login, managed identity). Wins over a connection string. (env AZTRAIN_STORAGE_ACCOUNT_URL)",
        show_default=False,
    ),
]
WorkersOption = Annotated[int, typer.Option(min=1, max=64, help="Parallel uploads (threads).")]


def _show_version(value: bool) -> None:
    if value:
        print(f"aztrain {package_version('aztrain')}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="API base URL. (env AZTRAIN_URL; config url; default http://127.0.0.1:7071)"),
    ] = None,
    function_key: Annotated[
        str | None,
        typer.Option(help="Function key for an API in Azure. (env AZTRAIN_FUNCTION_KEY; config function_key)"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Config file (TOML). (env AZTRAIN_CONFIG; default ~/.config/aztrain/config.toml)"),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Event-driven control plane for distributed Horovod training on Azure: the command line."""
    ctx.obj = Session({"url": url, "function_key": function_key}, config)


# ---- runs -----------------------------------------------------------------------------------------------------


def print_transition(row: dict[str, Any]) -> None:
    """One history row, as the CLI and the demo show it."""
    print(transition_line(row), flush=True)


def _manifest_epochs(data: bytes) -> int | None:
    """The epochs a manifest asks for, to show `epoch k/n`; None when it leaves them to the trainer."""
    try:
        epochs = parse_manifest(data).trainer.args.get("epochs")
    except ManifestError:
        return None
    return epochs if isinstance(epochs, int) else None


def _follow(
    out: Out, client: Client, run: dict[str, Any], *, total_epochs: int | None, timeout: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Follow a run to its end, telling its states and epochs; exits with the code of how it ended."""
    follower = RunFollower(client, out, total_epochs=total_epochs)
    try:
        final = follower.follow(run["id"], timeout=timeout)
    except WaitTimedOut as exc:
        out.error(str(exc), code=ExitCode.TIMED_OUT, run=exc.run)
        out.note(_goes_on(exc.run))
        raise typer.Exit(ExitCode.TIMED_OUT) from None
    except KeyboardInterrupt:
        out.note(f"\ninterrupted: {_goes_on(run)}")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    out.line(outcome_line(final), style=STATE_STYLE.get(final["state"]))
    for line in outputs_lines(final):
        out.line(line)
    return final, follower.metrics


def _goes_on(run: dict[str, Any]) -> str:
    run_id = run["id"]
    return (
        f"run {run_id} goes on. Follow it: aztrain logs -f {run_id}  ·  "
        f"see it: aztrain show {run_id}  ·  cancel it: aztrain cancel {run_id}"
    )


@app.command(
    epilog=_examples(
        "aztrain submit examples/digits.yaml --wait",
        "aztrain submit job.yaml --force --wait --timeout 30m",
        "aztrain submit job.yaml --json | jq -r .run.id",
    )
)
def submit(
    ctx: typer.Context,
    manifest: ManifestArgument,
    force: Annotated[
        bool, typer.Option("--force", help="Run again even if an identical manifest already ran.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Follow the run to its end: states, per-epoch progress, where its outputs are."),
    ] = False,
    timeout: TimeoutOption = 3600,
    as_json: JsonOption = False,
) -> None:
    """Submit a manifest (POST /api/jobs); with --wait, follow the run to its end."""
    session, out = _begin(ctx, as_json)
    data = manifest.read_bytes()
    try:
        result = session.client.submit(data, force=force)
    except ApiError as exc:
        rejected = exc.body.get("run")
        if exc.status not in (400, 422) or not isinstance(rejected, dict):
            raise
        out.error(f"{manifest}: rejected: {exc.message}", problems=exc.problems, code=ExitCode.REJECTED, run=rejected)
        raise typer.Exit(ExitCode.REJECTED) from None
    run = result["run"]
    note = "created" if result["created"] else f"existing run ({result['reason']})"
    out.line(f"run {run['id']} of job {run['job']}: {run['state']} — {note}")
    if not wait:
        if as_json:
            out.json(result)
        return
    final, metrics = _follow(out, session.client, run, total_epochs=_manifest_epochs(data), timeout=timeout)
    if as_json:
        out.json({**result, "run": final, "metrics": metrics})
    raise typer.Exit(STATE_EXIT.get(final["state"], ExitCode.OK))


@app.command(
    epilog=_examples(
        "aztrain runs", "aztrain runs --job digits-classifier --state FAILED,CANCELED", "aztrain runs --state REJECTED"
    )
)
def runs(
    ctx: typer.Context,
    job: Annotated[str, typer.Option(help="Only this job's runs.")] = "",
    state: Annotated[
        str,
        typer.Option(parser=_states, help="Only runs in these states, comma-separated: RUNNING or FAILED,CANCELED."),
    ] = "",
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many runs (a page).")] = 20,
    continuation: Annotated[str, typer.Option(help="Continue a listing: the `next` token of the previous page.")] = "",
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first (rejected manifests show as REJECTED)."""
    session, out = _begin(ctx, as_json)
    page, token = session.client.runs_page(job=job, state=state, limit=limit, continuation=continuation)
    if as_json:
        out.json({"runs": page, "next": token})
        return
    if not page:
        out.line("no runs")
        return
    table = out.table("RUN", "JOB", "STATE", "TRIGGER", "CREATED", "ERROR / METRICS")
    for run in page:
        extra = clip(run["error"], 90) if run["error"] else summarise_metrics(run["metrics"])
        table.add_row(
            run["id"], run["job"], state_text(run["state"]), run["trigger"], run["created_at"][:19], extra or "—"
        )
    out.console.print(table)
    if token:
        out.note(f"more: aztrain runs --limit {limit} --continuation {token}")


def _metrics_or_none(client: Client, run_id: str) -> dict[str, Any] | None:
    """Per-epoch metrics, or None where this API does not serve them."""
    try:
        return client.metrics(run_id)
    except ApiError as exc:
        if exc.endpoint_missing or exc.status == 404:
            return None
        raise


@app.command(epilog=_examples("aztrain show 8235190", "aztrain show 8235190 --wait", "aztrain show 8235190 --json"))
def show(
    ctx: typer.Context,
    run_id: RunIdArgument,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run to its end (as submit --wait does).")] = False,
    timeout: TimeoutOption = 3600,
    as_json: JsonOption = False,
) -> None:
    """A run: state, error, outputs, per-epoch metrics and its full state history."""
    session, out = _begin(ctx, as_json)
    client = session.client
    run = client.run(run_id)
    out.line(
        f"run {run['id']}  job {run['job']}  {run['state']}  ({run['trigger']} from {run['source']})"
        f"  attempt {run['attempt']}" + (f"  cluster {run['cluster']}" if run["cluster"] else "")
    )
    if run["error"]:
        out.line(f"error: {run['error']}", style="red")
    if wait and not run["terminal"]:
        run, metrics = _follow(out, client, run, total_epochs=None, timeout=timeout)
    else:
        metrics = _metrics_or_none(client, run["id"])
        for row in (metrics or {}).get("epochs") or []:
            out.line(epoch_line(row, None))
        for row in run["history"]:
            out.line(transition_line(row))
        if run["metrics"]:
            out.line(f"metrics: {summarise_metrics(run['metrics'], 200)}")
        for line in outputs_lines(run):
            out.line(line)
    if as_json:
        out.json({"run": run, "metrics": metrics})
    if wait:
        raise typer.Exit(STATE_EXIT.get(run["state"], ExitCode.OK))


@app.command(epilog=_examples("aztrain cancel 8235190", "aztrain cancel 8235190 --json"))
def cancel(ctx: typer.Context, run_id: RunIdArgument, as_json: JsonOption = False) -> None:
    """Cancel a run (idempotent: cancelling a canceled run is fine; a finished one is a conflict)."""
    session, out = _begin(ctx, as_json)
    run = session.client.cancel(session.client.run(run_id)["id"])
    if as_json:
        out.json({"run": run})
    else:
        out.line(f"run {run['id']}: {run['state']}")


@app.command(
    epilog=_examples("aztrain logs 8235190", "aztrain logs -f 8235190", "aztrain logs 8235190 --tail 20 --json")
)
def logs(
    ctx: typer.Context,
    run_id: RunIdArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing lines as they are written, until the run ends.")
    ] = False,
    tail: Annotated[int | None, typer.Option(min=1, max=10000, help="Start with only the last N lines.")] = None,
    as_json: JsonOption = False,
) -> None:
    """A run's log (the driver log of the training job), running or finished; -f follows it."""
    session, out = _begin(ctx, as_json)
    client = session.client
    run_id = client.run(run_id)["id"]
    try:
        chunk = client.logs(run_id, tail=tail or 0)
    except ApiError as exc:
        if exc.endpoint_missing:
            raise AztrainError(f"this API does not serve run logs yet (GET /api/runs/{run_id}/logs)") from None
        raise
    if not follow:
        if tail is None:  # the whole log: the API answers it in bounded chunks
            chunk = _read_rest(client, run_id, chunk)
        _emit_log(out, run_id, chunk)
        return
    _emit_log(out, run_id, chunk)
    try:
        for more in follow_log(client, run_id, start=chunk, is_over=lambda: bool(client.run(run_id)["terminal"])):
            _emit_log(out, run_id, more)
    except KeyboardInterrupt:
        out.note(f"\nstopped following; run {run_id} goes on")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    raise typer.Exit(STATE_EXIT.get(client.run(run_id)["state"], ExitCode.OK))


def _read_rest(client: Client, run_id: str, first: LogChunk) -> LogChunk:
    parts, chunk = [first.text], first
    while chunk.text:
        chunk = client.logs(run_id, offset=chunk.next_offset)
        parts.append(chunk.text)
    return LogChunk("".join(parts), first.offset, chunk.next_offset)


def _emit_log(out: Out, run_id: str, chunk: LogChunk) -> None:
    if out.as_json:
        out.json({"run": run_id, "offset": chunk.offset, "next_offset": chunk.next_offset, "text": chunk.text})
    else:
        sys.stdout.write(chunk.text)
        sys.stdout.flush()


# ---- jobs, clusters, models ---------------------------------------------------------------------------------


@app.command(epilog=_examples("aztrain jobs", "aztrain jobs --json"))
def jobs(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Registered jobs: what each watches, its manifest hash and its last run."""
    session, out = _begin(ctx, as_json)
    found = session.client.jobs()
    if as_json:
        out.json({"jobs": found})
        return
    if not found:
        out.line("no jobs")
        return
    table = out.table("JOB", "WATCHES", "LAST RUN", "MANIFEST", "UPDATED")
    for job in found:
        table.add_row(
            job["name"],
            job["watch"] or "—",
            job["last_run_id"] or "—",
            job["manifest_hash"][:12],
            job["updated_at"][:19],
        )
    out.console.print(table)


@app.command(epilog=_examples("aztrain clusters", "aztrain clusters --json"))
def clusters(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Compute clusters: desired vs observed nodes, active runs, the last scale action."""
    session, out = _begin(ctx, as_json)
    found = session.client.clusters()
    if as_json:
        out.json({"clusters": found})
        return
    if not found:
        out.line("no clusters")
        return
    table = out.table("BACKEND", "CLUSTER", "DESIRED", "OBSERVED", "ACTIVE RUNS", "LAST SCALE", "TO ZERO")
    for c in found:
        zero = f"{c['seconds_to_zero']:.1f} s" if c["seconds_to_zero"] is not None else "—"
        table.add_row(
            c["backend"],
            c["name"],
            str(c["desired_nodes"]),
            str(c["observed_nodes"]),
            clip(", ".join(c["active_runs"]), 44) or "—",
            c["last_scale_action"] or "—",
            zero,
        )
    out.console.print(table)


@app.command(epilog=_examples("aztrain window digits-classifier"))
def window(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(metavar="JOB", help="A job that watches a data prefix.")],
    as_json: JsonOption = False,
) -> None:
    """A watched job's pending retraining window: arrivals, when it fires, or why it does not."""
    session, out = _begin(ctx, as_json)
    found = session.client.window(job)
    if as_json:
        out.json(found)
        return
    when = f", fires at {found['fires_at'][:19]}" if found["fires_at"] and found["action"] == "wait" else ""
    out.line(f"{found['job']}: {found['arrivals']} new blob(s) pending — {found['reason']}{when}")


@app.command(epilog=_examples("aztrain models", "aztrain models digits-classifier --json"))
def models(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="[NAME]", help="Only this model's versions.", show_default=False)] = "",
    as_json: JsonOption = False,
) -> None:
    """Registered model versions, all or of one model (promoted ones marked)."""
    session, out = _begin(ctx, as_json)
    if as_json:
        out.json(session.client.model(name) if name else {"models": session.client.models()})
        return
    found = session.client.models(name)
    if not found:
        out.line("no models registered")
        return
    table = out.table("MODEL", "VERSION", "PROMOTED", "RUN", "METRICS", "GATE")
    for m in found:
        table.add_row(
            m["name"],
            str(m["version"]),
            "yes" if m["promoted"] else "",
            m["run_id"],
            summarise_metrics(m["metrics"], 40) or "—",
            clip(m["gate"], 50),
        )
    out.console.print(table)


def _model_ref(value: str) -> str:
    name, sep, number = value.rpartition("@")
    if not sep or not name or not number.isdigit():
        raise typer.BadParameter("name the model as NAME@VERSION, e.g. digits-classifier@3")
    return value


@app.command(epilog=_examples("aztrain lineage digits-classifier@3"))
def lineage(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(parser=_model_ref, metavar="NAME@VERSION", help="A model version.")],
    as_json: JsonOption = False,
) -> None:
    """Where a model version came from: model → run → data snapshot → blobs."""
    session, out = _begin(ctx, as_json)
    name, _, number = model.rpartition("@")
    found = session.client.lineage(name, int(number))
    if as_json:
        out.json(found)
        return
    version, run, snap = found["model"], found["run"], found["snapshot"]
    promoted = "(promoted) " if version["promoted"] else ""
    out.line(f"model    {version['name']}@{version['version']}  {promoted}{version['artifact']}")
    out.line(f"  run    {run['id']}  {run['state']}  {run['trigger']} from {run['source']}")
    out.line(f"         manifest {run['manifest_hash'][:12]}  metrics {summarise_metrics(version['metrics'], 100)}")
    out.line(f"  data   {snap['id']}  {len(snap['blobs'])} blob(s) in {snap['container']}/{snap['prefix']}")
    for blob in snap["blobs"]:
        out.line(f"    {blob['name']}  {blob['size']} B  etag {blob['etag']}")


# ---- manifests, offline -------------------------------------------------------------------------------------


@app.command(epilog=_examples("aztrain validate examples/digits.yaml", "aztrain validate job.yaml --normalised"))
def validate(
    ctx: typer.Context,
    manifest: ManifestArgument,
    normalised: Annotated[
        bool, typer.Option("--normalised", help="Also print the normalised manifest (defaults filled).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check a manifest offline: every problem named, with its fix."""
    _, out = _begin(ctx, as_json)
    try:
        spec = parse_manifest(manifest.read_bytes(), source=str(manifest))
    except ManifestError as exc:
        if as_json:
            out.json({"file": str(manifest), "valid": False, "problems": exc.problems})
        else:
            out.errors.print(f"{manifest}: invalid", markup=False)
            for problem in exc.problems:
                out.errors.print(f"  - {problem}", markup=False, soft_wrap=True)
        raise typer.Exit(ExitCode.FAILED) from None
    if as_json:
        out.json(
            {
                "file": str(manifest),
                "valid": True,
                "job": spec.name,
                "hash": spec.content_hash,
                "problems": [],
                "normalised": spec.normalised(),
            }
        )
        return
    out.line(f"{manifest}: valid (job {spec.name}, hash {spec.content_hash[:12]})")
    if normalised:
        out.json(spec.normalised())


#: What `plan` prints for the job's code folder: a temp folder of this machine means nothing to the reader.
TRAINER_CODE = "<trainer-code>"


@app.command(epilog=_examples("aztrain plan examples/digits.yaml", "aztrain plan job.yaml --json"))
def plan(ctx: typer.Context, manifest: ManifestArgument, as_json: JsonOption = False) -> None:
    """The Azure ML compute and command job (YAML) a manifest becomes, offline."""
    from aztrain.plan import render_plan  # only this command loads azure.ai.ml

    _, out = _begin(ctx, as_json)
    load_local_settings(PROJECT_ROOT / "local.settings.json")  # the same profiles and environment as the app
    try:
        rendered = render_plan(manifest.read_bytes(), Settings.from_env())
    except ManifestError as exc:
        out.error(f"{manifest}: cannot run on Azure ML", problems=exc.problems, code=ExitCode.FAILED)
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


@app.command(epilog=_examples("aztrain schema > manifest.schema.json"))
def schema(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The manifest's JSON Schema (always JSON; --json is accepted for uniformity)."""
    _, out = _begin(ctx, as_json)
    out.json(manifest_schema())


# ---- data ---------------------------------------------------------------------------------------------------


def _blob_service(session: Session, connection_string: str | None, account_url: str | None, workers: int) -> Any:
    from aztrain.upload import connect

    session.extra_flags = {"storage_connection_string": connection_string, "storage_account_url": account_url}
    conn = session.connection
    return connect(
        connection_string=conn.storage_connection_string, account_url=conn.storage_account_url, workers=workers
    )


def _upload(out: Out, service: Any, folder: Path, container: str, prefix: str, workers: int) -> None:
    from aztrain.upload import upload_folder

    with UploadBar(out.errors, enabled=not out.as_json) as bar:
        summary = upload_folder(service, folder, container, prefix, workers=workers, progress=bar)
    if out.as_json:
        out.json(summary.to_json())
        return
    mb = summary.uploaded_bytes / 1e6
    out.line(
        f"{summary.uploaded} uploaded, {summary.skipped} already there (same size and MD5), "
        f"{mb:.1f} MB sent in {summary.seconds:.1f} s → {container}/{summary.prefix}"
    )


@app.command(
    epilog=_examples(
        "aztrain upload ./images --container datasets --prefix flowers/",
        "aztrain upload ./images --container datasets --prefix flowers/ --account-url https://ACCOUNT.blob.core.windows.net",
    )
)
def upload(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, metavar="DIR", help="The folder to upload.")],
    container: Annotated[str, typer.Option(help="Blob container (created if missing).")],
    prefix: Annotated[str, typer.Option(help="Folder in the container the files go under, e.g. digits/.")],
    workers: WorkersOption = 8,
    connection_string: ConnectionStringOption = None,
    account_url: AccountUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a folder in parallel; files already there (same size and MD5) are skipped, so a rerun resumes."""
    session, out = _begin(ctx, as_json)
    _upload(out, _blob_service(session, connection_string, account_url, workers), folder, container, prefix, workers)


@app.command("seed-digits", epilog=_examples("aztrain seed-digits", "aztrain submit examples/digits.yaml --wait"))
def seed_digits(
    ctx: typer.Context,
    container: Annotated[str, typer.Option(help="Blob container.")] = "datasets",
    prefix: Annotated[str, typer.Option(help="Folder in the container.")] = "digits/",
    connection_string: ConnectionStringOption = None,
    account_url: AccountUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload scikit-learn's digits data set (what examples/digits.yaml trains on), for a first run."""
    from trainer.data import export_digits  # the trainer package owns the data format

    session, out = _begin(ctx, as_json)
    service = _blob_service(session, connection_string, account_url, workers=2)
    with tempfile.TemporaryDirectory() as tmp:
        export_digits(Path(tmp))
        _upload(out, service, Path(tmp), container, prefix, workers=2)


@app.command("config", epilog=_examples("aztrain config", "aztrain --url https://my-app.azurewebsites.net config"))
def show_config(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Where this CLI connects, and where each setting came from (flag, env, config file, default)."""
    session, out = _begin(ctx, as_json)
    conn = session.connection
    values = {
        "url": conn.url,
        "function_key": _masked(conn.function_key),
        "storage_connection_string": _masked_connection_string(conn.storage_connection_string),
        "storage_account_url": conn.storage_account_url,
    }
    if as_json:
        out.json(
            {
                "config_file": str(cli_config.config_path(session.config)),
                "settings": {k: {"value": v, "source": conn.sources[k]} for k, v in values.items()},
            }
        )
        return
    out.line(f"config file: {cli_config.config_path(session.config)}")
    table = out.table("SETTING", "VALUE", "FROM")
    for key, value in values.items():
        table.add_row(key, value or "—", conn.sources[key])
    out.console.print(table)


def _masked(secret: str) -> str:
    return f"{secret[:4]}…" if secret else ""


def _masked_connection_string(value: str) -> str:
    parts = [p.split("=", 1) for p in value.split(";") if "=" in p]
    return ";".join(f"{k}={_masked(v) if k in ('AccountKey', 'SharedAccessSignature') else v}" for k, v in parts)


# ---- the local stack ----------------------------------------------------------------------------------------


def configure_logging(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP request at INFO


@app.command(epilog=_examples("aztrain dev", "aztrain dev --port 7080 --azurite-port 10020"))
def dev(
    port: Annotated[int, typer.Option(help="Port of the Functions dev host (the API).")] = 7071,
    azurite_port: Annotated[int, typer.Option(help="Azurite blob port; queue and table use the next two.")] = 10000,
    state_dir: Annotated[
        Path, typer.Option(help="Folder for Azurite's data and the local cluster's job folders.")
    ] = Path(".aztrain/dev"),
    timer_interval: Annotated[float, typer.Option(help="Seconds between reconciler runs.")] = 2.0,
) -> None:
    """Run Azurite + the Functions dev host (HTTP, Event Grid webhooks, timers, blob → BlobCreated)."""
    from devhost.localstack import LocalStack  # dev-only (not deployed), so imported here alone

    configure_logging(logging.INFO)

    with LocalStack(
        state_dir=Path(state_dir),
        port=port,
        azurite_port=azurite_port,
        timer_interval=timer_interval,
    ) as stack:
        print(f"aztrain dev host on {stack.url} (Azurite on 127.0.0.1:{azurite_port}); Ctrl-C to stop", flush=True)
        stack.serve_forever()


@app.command(epilog=_examples("aztrain demo"))
def demo(
    port: Annotated[int, typer.Option(help="Port of the demo's own dev host.")] = 7072,
    azurite_port: Annotated[int, typer.Option(help="The demo's own Azurite blob port (and the next two).")] = 10010,
) -> None:
    """End-to-end demo: data + manifest in, trained model out, cluster back to zero."""
    from devhost.demo import run_demo

    configure_logging(logging.WARNING)  # the demo narrates; only problems should interrupt it
    raise typer.Exit(run_demo(port=port, azurite_port=azurite_port))


# ---- entry point ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see `ExitCode`)."""
    global _out
    _out = Out()
    try:
        app(args=argv, prog_name="aztrain")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.OK if exc.code is None else ExitCode.FAILED
    except AmbiguousRunId as exc:
        return _failed(str(exc), ExitCode.USAGE)
    except ApiError as exc:
        missing = " (this API version does not serve it; update the function app)" if exc.endpoint_missing else ""
        return _failed(exc.message + missing, ExitCode.API_ERROR, problems=exc.problems, status=exc.status)
    except ApiUnreachable as exc:
        return _failed(f"{exc}; is `aztrain dev` running, or is --url / AZTRAIN_URL right?", ExitCode.UNREACHABLE)
    except (AztrainError, OSError) as exc:
        return _failed(str(exc), ExitCode.FAILED)
    return ExitCode.OK


def _failed(message: str, code: ExitCode, **details: Any) -> int:
    _out.error(message, code=code, **details)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
