"""`aztrain upload | seed-digits | config`: data into blob storage, and where the CLI connects."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from aztrain.cli import config as cli_config
from aztrain.cli.app import (
    AccountUrlOption,
    ConnectionStringOption,
    JsonOption,
    Session,
    WorkersOption,
    app,
    begin,
    examples,
)
from aztrain.cli.output import ExitCode, Out, UploadBar
from aztrain.domain.errors import AztrainError


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
