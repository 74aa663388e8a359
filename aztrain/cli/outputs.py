"""`aztrain logs | download`: what a run writes, its log while it runs, its model and metrics once done."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from aztrain.api.models import LogChunk
from aztrain.cli.app import JsonOption, RunIdArgument, app, begin, examples
from aztrain.cli.client import Client
from aztrain.cli.follow import follow_log
from aztrain.cli.output import STATE_EXIT, ExitCode, Out
from aztrain.domain.errors import AztrainError
from aztrain.domain.layout import local_path


@app.command(epilog=examples("aztrain logs 3fa9c2", "aztrain logs -f last", "aztrain logs 3fa9c2 --tail 20 --json"))
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
    session, out = begin(ctx, as_json)
    client = session.client
    run = client.run(run_id)
    chunk = client.logs(run.id, tail=tail or 0)
    if not follow:
        if tail is None:  # the whole log: the API answers it in bounded chunks
            chunk = _read_rest(client, run.id, chunk)
        _emit_log(out, run.id, chunk)
        if not chunk.text:
            out.note(f"no log (yet): run {run.short_id} is {run.state}")
        return
    _emit_log(out, run.id, chunk)
    try:
        for more in follow_log(client, run.id, start=chunk, is_over=lambda: client.run(run.id).terminal):
            _emit_log(out, run.id, more)
    except KeyboardInterrupt:
        out.note(f"\nstopped following; run {run.short_id} goes on")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    raise typer.Exit(STATE_EXIT.get(client.run(run.id).state, ExitCode.OK))


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


#: What `download --model` fetches: the trainer's model file (state dict, classes, input shape, lineage).
MODEL_FILE = "model.pt"


@app.command(
    epilog=examples(
        "aztrain download last",
        "aztrain download 3fa9c2 --outputs -o results/",
        "aztrain download 3fa9c2 --json",
    )
)
def download(
    ctx: typer.Context,
    run_id: RunIdArgument,
    outputs: Annotated[
        bool, typer.Option("--outputs", help="Every file of the run's outputs (model, metrics), not only the model.")
    ] = False,
    model: Annotated[bool, typer.Option("--model", help="Only the model (the default).")] = False,
    folder: Annotated[
        Path, typer.Option("--output-dir", "-o", file_okay=False, help="Where the files go (made if missing).")
    ] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Download a run's model (model.pt), or with --outputs all its output files, into a folder."""
    session, out = begin(ctx, as_json)
    if outputs and model:
        raise typer.BadParameter("give --model or --outputs, not both", param_hint="--outputs")
    client = session.client
    run = client.run(run_id)
    files = client.output_files(run.id)
    wanted = files if outputs else [f for f in files if f.name == MODEL_FILE]
    if not wanted:
        what = "no output files" if outputs else f"no {MODEL_FILE}"
        raise AztrainError(f"run {run.short_id} ({run.state}) has {what} (yet): a COMPLETED run has its model")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file in wanted:
        target = local_path(folder, file.name)  # a name that would climb out of the folder is refused
        target.write_bytes(client.output(run.id, file.name))
        written.append({"name": file.name, "size": file.size, "path": str(target), "from": file.path})
        out.line(f"{target}  {file.size:,} bytes  (from {file.path})")
    if as_json:
        out.json({"run": run.id, "files": written})
