"""`aztrain upload | seed-digits | drop | config`: data and manifests into blob storage, and where the CLI connects."""

from __future__ import annotations

import contextlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from aztrain.cli import config as cli_config
from aztrain.cli.app import (
    AccountUrlOption,
    ConnectionStringOption,
    JsonOption,
    ManifestArgument,
    Session,
    TimeoutOption,
    WorkersOption,
    app,
    begin,
    examples,
)
from aztrain.cli.output import STATE_EXIT, ExitCode, Out, UploadBar
from aztrain.cli.runs import follow_to_end, wait_for_new_run
from aztrain.domain.errors import AztrainError, ManifestError
from aztrain.domain.layout import blob_path_problem
from aztrain.domain.manifest import parse_manifest


def _blob_service(session: Session, connection_string: str | None, account_url: str | None, workers: int) -> Any:
    from aztrain.cli.upload import connect

    session.extra_flags = {"storage_connection_string": connection_string, "storage_account_url": account_url}
    conn = session.connection
    return connect(
        connection_string=conn.storage_connection_string, account_url=conn.storage_account_url, workers=workers
    )


def _upload(out: Out, service: Any, folder: Path, container: str, prefix: str, workers: int) -> None:
    from aztrain.cli.upload import upload_folder

    try:
        with UploadBar(out.errors, enabled=not out.as_json) as bar:
            summary = upload_folder(service, folder, container, prefix, workers=workers, progress=bar)
    except KeyboardInterrupt:
        out.note("interrupted: run the same command again to resume (what was sent is skipped)")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    if out.as_json:
        out.json(summary.to_json())
        return
    mb = summary.uploaded_bytes / 1e6
    out.line(
        f"{summary.uploaded} uploaded, {summary.skipped} already there (same size and MD5), "
        f"{mb:.1f} MB sent in {summary.seconds:.1f} s → {container}/{summary.prefix}"
    )


@app.command(
    epilog=examples(
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
    session, out = begin(ctx, as_json)
    _upload(out, _blob_service(session, connection_string, account_url, workers), folder, container, prefix, workers)


@app.command("seed-digits", epilog=examples("aztrain seed-digits", "aztrain submit examples/digits.yaml --wait"))
def seed_digits(
    ctx: typer.Context,
    container: Annotated[str, typer.Option(help="Blob container.")] = "datasets",
    prefix: Annotated[str, typer.Option(help="Folder in the container.")] = "digits/",
    connection_string: ConnectionStringOption = None,
    account_url: AccountUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload scikit-learn's digits data set (what examples/digits.yaml trains on), for a first run."""
    session, out = begin(ctx, as_json)
    try:
        from trainer.data import export_digits  # the trainer package owns the data format
    except ImportError as exc:  # numpy and scikit-learn come with the trainer extra only
        raise AztrainError(f"seed-digits needs {exc.name}: pip install 'aztrain[trainer]'") from None
    service = _blob_service(session, connection_string, account_url, workers=2)
    with tempfile.TemporaryDirectory() as tmp:
        export_digits(Path(tmp))
        _upload(out, service, Path(tmp), container, prefix, workers=2)


@app.command(
    epilog=examples(
        "aztrain drop examples/digits.yaml",
        "aztrain drop examples/digits.yaml --wait",
        "aztrain drop job.yaml --account-url https://ACCOUNT.blob.core.windows.net",
    )
)
def drop(
    ctx: typer.Context,
    manifest: ManifestArgument,
    container: Annotated[
        str, typer.Option(envvar="AZTRAIN_JOBS_CONTAINER", help="The jobs container the app watches.")
    ] = "jobs",
    prefix: Annotated[
        str, typer.Option(envvar="AZTRAIN_MANIFESTS_PREFIX", help="Where in it manifests are dropped.")
    ] = "manifests/",
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the run the drop starts, and follow it to its end.")
    ] = False,
    timeout: TimeoutOption = 3600,
    connection_string: ConnectionStringOption = None,
    account_url: AccountUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Drop a manifest into the jobs container (what Event Grid turns into a run); checked offline first."""
    session, out = begin(ctx, as_json)
    try:
        spec = parse_manifest(manifest.read_bytes(), source=str(manifest))
    except ManifestError as exc:  # the app would record it REJECTED: say why now instead
        out.error(
            f"{manifest}: invalid; nothing dropped", problems=[str(p) for p in exc.problems], code=ExitCode.FAILED
        )
        raise typer.Exit(ExitCode.FAILED) from None
    name = prefix.rstrip("/") + "/" + manifest.name if prefix.strip("/") else manifest.name
    if problem := blob_path_problem(name):
        raise typer.BadParameter(f"{name!r} {problem}", param_hint="--prefix")
    dropped_at = datetime.now(UTC)
    _put_file(_blob_service(session, connection_string, account_url, workers=1), manifest, container, name)
    out.line(f"dropped {container}/{name} (job {spec.name}); its run appears at the app's next reconcile")
    if not wait:
        if as_json:
            out.json({"container": container, "blob": name, "job": spec.name})
        out.note(f"see it: aztrain runs --job {spec.name}  ·  or drop with --wait to follow it")
        return
    run = wait_for_new_run(session.client, spec.name, since=dropped_at, timeout=min(timeout, _APPEARS_SECONDS))
    out.line(f"run {run.short_id} of job {run.job}: {run.state}")
    final, metrics = follow_to_end(out, session.client, run, timeout=timeout)
    if as_json:
        out.json({"container": container, "blob": name, "job": spec.name, "run": final, "metrics": metrics})
    raise typer.Exit(STATE_EXIT.get(final.state, ExitCode.OK))


def _put_file(service: Any, path: Path, container: str, name: str) -> None:
    """One small file as one blob (replacing what is there), with its Content-MD5; the container made if missing."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import ContentSettings

    from aztrain.cli.upload import file_md5

    client = service.get_container_client(container)
    with contextlib.suppress(ResourceExistsError):
        client.create_container()
    settings = ContentSettings(content_md5=bytearray(file_md5(path)))
    client.upload_blob(name, path.read_bytes(), overwrite=True, content_settings=settings)


#: How long a dropped manifest's run may take to appear (an event, then a reconcile: seconds, unless busy).
_APPEARS_SECONDS = 120


#: The widest `aztrain config` prints, whatever the terminal: it is read, not scanned.
CONFIG_WIDTH = 100


@app.command("config", epilog=examples("aztrain config", "aztrain --url https://my-app.azurewebsites.net config"))
def show_config(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Where this CLI connects, and where each setting came from (flag, env, config file, default)."""
    session, out = begin(ctx, as_json)
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
    config_file = cli_config.config_path(session.config)
    out.line(f"config file: {config_file}" + ("" if config_file.is_file() else " (none there)"))
    # Long values (a connection string) wrap inside their column: the table fits 100 columns.
    table = Table(box=None, pad_edge=False, header_style="bold", width=min(out.console.width, CONFIG_WIDTH))
    table.add_column("SETTING", no_wrap=True)
    table.add_column("VALUE", overflow="fold", ratio=1)
    table.add_column("FROM", no_wrap=True)
    for key, value in values.items():
        source = conn.sources[key]
        table.add_row(key, value or "—", "config file" if source.startswith("config ") else source)
    out.console.print(table)


def _masked(secret: str) -> str:
    return f"{secret[:4]}…" if secret else ""


def _masked_connection_string(value: str) -> str:
    parts = [p.split("=", 1) for p in value.split(";") if "=" in p]
    return ";".join(f"{k}={_masked(v) if k in ('AccountKey', 'SharedAccessSignature') else v}" for k, v in parts)
