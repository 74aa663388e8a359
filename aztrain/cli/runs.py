"""`aztrain submit | runs | show | cancel | logs`: runs, followed as they happen."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from aztrain.cli.app import JsonOption, ManifestArgument, RunIdArgument, TimeoutOption, app, begin, examples
from aztrain.cli.client import ApiError, Client, LogChunk
from aztrain.cli.code_snapshots import manifest_with_code
from aztrain.cli.follow import RunFollower, WaitTimedOut, follow_log
from aztrain.cli.output import (
    STATE_EXIT,
    STATE_STYLE,
    ExitCode,
    Out,
    clip,
    epoch_line,
    outcome_line,
    outputs_lines,
    state_text,
    summarise_metrics,
    transition_line,
)
from aztrain.domain.errors import ManifestError
from aztrain.domain.manifest import parse_manifest
from aztrain.domain.runs import RunState


def _states(value: str) -> str:
    """Check `RUNNING,FAILED`-style state lists here, so a typo is a usage error with the choices named."""
    names = [s.strip().upper() for s in value.split(",") if s.strip()]
    known = [s.value for s in RunState]
    wrong = [n for n in names if n not in known]
    if wrong:
        raise typer.BadParameter(f"unknown state(s) {', '.join(wrong)}; choose from {', '.join(known)}")
    return ",".join(names)


def _planned_epochs(client: Client, run: dict[str, Any]) -> int | None:
    """How many epochs the run trains, to show `epoch k/n`: its final metrics, else its job's manifest."""
    epochs = run["metrics"].get("epochs")
    if epochs is None and not run["terminal"]:  # a finished run's epochs are all listed already
        document = next((j["manifest"] for j in client.jobs() if j["name"] == run["job"]), None)
        try:
            epochs = parse_manifest(json.dumps(document)).trainer.args.get("epochs") if document else None
        except ManifestError:  # a manifest of a newer API than this CLI knows: just no "/n"
            epochs = None
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
    epilog=examples(
        "aztrain submit examples/digits.yaml --wait",
        "aztrain submit job.yaml --force --wait --timeout 30m",
        "aztrain submit job.yaml --json | jq -r .run.id",
    )
)
def submit(
    ctx: typer.Context,
    manifest: ManifestArgument,
    force: Annotated[
        bool, typer.Option("--force", help="Run again even if an identical manifest's run is active or completed.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Follow the run to its end: states, per-epoch progress, where its outputs are."),
    ] = False,
    timeout: TimeoutOption = 3600,
    as_json: JsonOption = False,
) -> None:
    """Submit a manifest (POST /api/jobs); with --wait, follow the run to its end."""
    session, out = begin(ctx, as_json)
    data, pushed = manifest_with_code(session, manifest)
    if pushed:
        out.note(pushed)
    try:
        result = session.client.submit(data, force=force)
    except ApiError as exc:
        rejected = exc.body.get("run")
        if exc.status not in (400, 422) or not isinstance(rejected, dict):
            raise
        # With field-level problems listed, the message (which repeats them) gives way to a headline.
        headline = f"rejected; run {rejected['id']} is recorded as REJECTED" if exc.problems else exc.message
        out.error(f"{manifest}: {headline}", problems=exc.problems, code=ExitCode.REJECTED, run=rejected)
        raise typer.Exit(ExitCode.REJECTED) from None
    run = result["run"]
    if result.get("waiting"):  # a watching job without data: registered, no run to follow yet
        out.line(result["reason"])
        if as_json:
            out.json(result)
        return
    note = "created" if result["created"] else f"existing run ({result['reason']})"
    out.line(f"run {run['id']} of job {run['job']}: {run['state']} — {note}")
    if not wait:
        if as_json:
            out.json(result)
        out.note(f"follow it: aztrain show {run['id']} --wait  ·  aztrain logs -f {run['id']}")
        return
    final, metrics = _follow(
        out, session.client, run, total_epochs=_planned_epochs(session.client, run), timeout=timeout
    )
    if as_json:
        out.json({**result, "run": final, "metrics": metrics})
    raise typer.Exit(STATE_EXIT.get(final["state"], ExitCode.OK))


@app.command(
    epilog=examples(
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
    session, out = begin(ctx, as_json)
    page, token = session.client.runs_page(job=job, state=state, limit=limit, continuation=continuation)
    out.listing("runs", page, ("RUN", "JOB", "STATE", "TRIGGER", "CREATED", "ERROR / METRICS"), _run_row, next=token)
    if token:
        out.note(f"more: aztrain runs --limit {limit} --continuation {token}")


def _run_row(run: dict[str, Any]) -> list[str | Text]:
    said = run["error"] or (f"waiting: {run['waiting_reason']}" if run.get("waiting_reason") else "")
    extra = clip(said, 90) if said else summarise_metrics(run["metrics"])
    return [run["id"], run["job"], state_text(run["state"]), run["trigger"], run["created_at"][:19], extra or "—"]


def _metrics_or_none(client: Client, run_id: str) -> dict[str, Any] | None:
    """Per-epoch metrics, or None where this API does not serve them."""
    try:
        return client.metrics(run_id)
    except ApiError as exc:
        if exc.status == 404:  # no metrics yet, or an API without the endpoint
            return None
        raise


@app.command(
    epilog=examples(
        "aztrain show 8235190",
        "aztrain show 8235190 --wait",
        "aztrain show 8235190 --all",
        "aztrain show 8235190 --json",
    )
)
def show(
    ctx: typer.Context,
    run_id: RunIdArgument,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run to its end (as submit --wait does).")] = False,
    all_history: Annotated[
        bool, typer.Option("--all", help="Also the refused transitions (late or duplicate news, marked ignored).")
    ] = False,
    timeout: TimeoutOption = 3600,
    as_json: JsonOption = False,
) -> None:
    """A run: state, error, outputs, per-epoch metrics and its state history (--all: refused moves too)."""
    session, out = begin(ctx, as_json)
    client = session.client
    run = client.run(run_id, all_history=all_history)
    out.line(
        f"run {run['id']}  job {run['job']}  {run['state']}  ({run['trigger']} from {run['source']})"
        f"  attempt {run['attempt']}" + (f"  cluster {run['cluster']}" if run["cluster"] else "")
    )
    if run.get("correlation_id"):  # an API before correlation ids has none to show
        out.line(f"correlation id {run['correlation_id']}")
    if run["error"]:
        out.line(f"error: {run['error']}", style="red")
    if run.get("waiting_reason"):  # an API before admission has none to show
        out.line(f"waiting: {run['waiting_reason']}", style="yellow")
    total = _planned_epochs(client, run)
    if wait and not run["terminal"]:
        run, metrics = _follow(out, client, run, total_epochs=total, timeout=timeout)
    else:
        metrics = _metrics_or_none(client, run["id"])
        for row in (metrics or {}).get("epochs") or []:
            out.line(epoch_line(row, total))
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


@app.command(epilog=examples("aztrain cancel 8235190", "aztrain cancel 8235190 --json"))
def cancel(ctx: typer.Context, run_id: RunIdArgument, as_json: JsonOption = False) -> None:
    """Cancel a run (idempotent: cancelling a canceled run is fine; a finished one is a conflict)."""
    session, out = begin(ctx, as_json)
    run = session.client.cancel(session.client.run(run_id)["id"])
    if as_json:
        out.json({"run": run})
    else:
        out.line(f"run {run['id']}: {run['state']}")


@app.command(
    epilog=examples("aztrain logs 8235190", "aztrain logs -f 8235190", "aztrain logs 8235190 --tail 20 --json")
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
    session, out = begin(ctx, as_json)
    client = session.client
    run = client.run(run_id)
    run_id = run["id"]
    chunk = client.logs(run_id, tail=tail or 0)
    if not follow:
        if tail is None:  # the whole log: the API answers it in bounded chunks
            chunk = _read_rest(client, run_id, chunk)
        _emit_log(out, run_id, chunk)
        if not chunk.text:
            out.note(f"no log (yet): run {run_id} is {run['state']}")
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
