"""`aztrain submit | runs | show | cancel`: runs, followed as they happen."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.text import Text

from aztrain.api import models as api
from aztrain.cli.app import JsonOption, ManifestArgument, RunIdArgument, TimeoutOption, app, begin, examples
from aztrain.cli.client import ApiError, Client
from aztrain.cli.code_snapshots import manifest_with_code
from aztrain.cli.follow import POLL_SECONDS, RunFollower, WaitTimedOut
from aztrain.cli.output import (
    STATE_EXIT,
    STATE_STYLE,
    ExitCode,
    Out,
    clip,
    epoch_line,
    moment,
    origin,
    outcome_line,
    outputs_lines,
    plain,
    state_text,
    summarise_metrics,
    transition_line,
)
from aztrain.cli.teams import show_dry_run
from aztrain.domain.errors import AztrainError, ManifestError
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


def _planned_epochs(client: Client, run: api.RunView) -> int | None:
    """How many epochs the run trains, to show `epoch k/n`: its final metrics, else its job's manifest."""
    epochs = run.metrics.get("epochs")  # a figure the trainer writes, among the others it may add
    if epochs is None and not run.terminal:  # a finished run's epochs are all listed already
        document = next((j.manifest for j in client.jobs() if j.name == run.job), None)
        try:
            epochs = parse_manifest(json.dumps(document)).trainer.args.get("epochs") if document else None
        except ManifestError:  # a manifest of a newer API than this CLI knows: just no "/n"
            epochs = None
    return epochs if isinstance(epochs, int) else None


def _follow(
    out: Out, client: Client, run: api.RunView, *, total_epochs: int | None, timeout: int
) -> tuple[api.RunDetail, api.Metrics | None]:
    """Follow a run to its end, telling its states and epochs; exits with the code of how it ended."""
    follower = RunFollower(client, out, total_epochs=total_epochs)
    try:
        final = follower.follow(run.id, timeout=timeout)
    except WaitTimedOut as exc:
        out.error(str(exc), code=ExitCode.TIMED_OUT, run=exc.run)
        out.note(_goes_on(exc.run))
        raise typer.Exit(ExitCode.TIMED_OUT) from None
    except KeyboardInterrupt:
        out.note(f"\ninterrupted: {_goes_on(run)}")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    out.line(outcome_line(final), style=STATE_STYLE.get(final.state))
    for line in outputs_lines(final):
        out.line(line)
    if final.state == "COMPLETED":
        out.note(f"get the model: aztrain download {final.short_id}")
    return final, follower.metrics


def follow_to_end(
    out: Out, client: Client, run: api.RunView, *, timeout: int
) -> tuple[api.RunDetail, api.Metrics | None]:
    """Follow a run to its end with `epoch k/n` progress (n from its manifest)."""
    return _follow(out, client, run, total_epochs=_planned_epochs(client, run), timeout=timeout)


def wait_for_new_run(client: Client, job: str, *, since: datetime, timeout: float) -> api.RunView:
    """The job's newest run once one created after `since` shows (a dropped manifest's, say)."""
    deadline = time.monotonic() + timeout
    while True:
        newest = client.runs(job=job, limit=1)
        if newest and newest[0].created_at >= since - _CLOCK_SKEW:
            return newest[0]
        if time.monotonic() > deadline:
            raise AztrainError(
                f"no new run of job {job} within {timeout:.0f} s. A manifest identical to the job's current one "
                "starts none while its run is active or completed (`aztrain submit --force` reruns it); otherwise "
                "is the app receiving blob events (`aztrain dev` is; in Azure, the Event Grid subscription)?"
            )
        time.sleep(POLL_SECONDS)


#: This machine's clock and the app's may differ by this much.
_CLOCK_SKEW = timedelta(seconds=5)


def _goes_on(run: api.RunView) -> str:
    ref = run.short_id
    return (
        f"run {ref} goes on. Follow it: aztrain logs -f {ref}  ·  "
        f"see it: aztrain show {ref}  ·  cancel it: aztrain cancel {ref}"
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
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Say what would happen (placement, cost, quota, wait); start nothing."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Submit a manifest (POST /api/jobs); with --wait, follow the run to its end; --dry-run records nothing."""
    session, out = begin(ctx, as_json)
    data, pushed = manifest_with_code(session, manifest)
    if pushed:
        out.note(pushed)
    if dry_run:
        show_dry_run(out, session.client, data, as_json=as_json)
        return
    try:
        result = session.client.submit(data, force=force)
    except ApiError as exc:
        rejected = exc.rejected_run
        if exc.status not in (400, 422) or rejected is None:
            raise
        # With field-level problems listed, the message (which repeats them) gives way to a headline.
        headline = f"rejected; run {rejected.short_id} is recorded as REJECTED" if exc.problems else exc.message
        out.error(f"{manifest}: {headline}", problems=exc.problems, code=ExitCode.REJECTED, run=rejected)
        raise typer.Exit(ExitCode.REJECTED) from None
    run = result.run
    if run is None:  # a watching job without data: registered, no run to follow yet
        out.line(result.reason)
        if as_json:
            out.json(result)
        return
    note = "created" if result.created else f"existing run ({result.reason})"
    out.line(f"run {run.short_id} of job {run.job}: {run.state} — {note}")
    if not wait:
        if as_json:
            out.json(result)
        out.note(f"follow it: aztrain show {run.short_id} --wait  ·  aztrain logs -f {run.short_id}")
        return
    final, metrics = follow_to_end(out, session.client, run, timeout=timeout)
    if as_json:
        out.json({**plain(result), "run": final, "metrics": metrics})
    raise typer.Exit(STATE_EXIT.get(final.state, ExitCode.OK))


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
    """List runs, newest first (rejected manifests show as REJECTED, with why)."""
    session, out = begin(ctx, as_json)
    page = session.client.runs_page(job=job, state=state, limit=limit, continuation=continuation)
    columns = ("RUN", "JOB", "STATE", "TRIGGER", "CREATED", "ERROR / METRICS")
    out.listing("runs", page.runs, columns, _run_row, next=page.next)
    if page.next:
        out.note(f"more: aztrain runs --limit {limit} --continuation {page.next}")


def _run_row(run: api.RunView) -> list[str | Text]:
    said = run.error or (f"waiting: {run.waiting_reason}" if run.waiting_reason else "")
    extra = clip(said, 90) if said else summarise_metrics(run.metrics)
    return [run.short_id, run.job, state_text(run.state), run.trigger, moment(run.created_at), extra or "—"]


def _metrics_or_none(client: Client, run_id: str) -> api.Metrics | None:
    """Per-epoch metrics, or None where this API does not serve them."""
    try:
        return client.metrics(run_id)
    except ApiError as exc:
        if exc.status == 404:  # no metrics yet, or an API without the endpoint
            return None
        raise


@app.command(
    epilog=examples(
        "aztrain show 3fa9c2",
        "aztrain show last --wait",
        "aztrain show 3fa9c2 --all",
        "aztrain show 3fa9c2 --json",
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
        f"run {run.short_id} ({run.id})  job {run.job}  {run.state}  ({origin(run)})"
        f"  attempt {run.attempt}" + (f"  cluster {run.cluster}" if run.cluster else "")
    )
    if run.correlation_id:
        out.line(f"correlation id {run.correlation_id}")
    if run.error:
        out.line(f"error: {run.error}", style="red")
    if run.waiting_reason:
        out.line(f"waiting: {run.waiting_reason}", style="yellow")
    total = _planned_epochs(client, run)
    metrics: api.Metrics | None
    if wait and not run.terminal:
        run, metrics = _follow(out, client, run, total_epochs=total, timeout=timeout)
    else:
        metrics = _metrics_or_none(client, run.id)
        for row in metrics.epochs if metrics else []:
            out.line(epoch_line(row, total))
        for transition in run.history:
            out.line(transition_line(transition))
        if run.metrics:
            out.line(f"metrics: {summarise_metrics(run.metrics, width=None)}")
        for line in outputs_lines(run):
            out.line(line)
    if as_json:
        out.json({"run": run, "metrics": metrics})
    if wait:
        raise typer.Exit(STATE_EXIT.get(run.state, ExitCode.OK))


@app.command(epilog=examples("aztrain cancel 3fa9c2", "aztrain cancel 3fa9c2 --json"))
def cancel(ctx: typer.Context, run_id: RunIdArgument, as_json: JsonOption = False) -> None:
    """Cancel a run (idempotent: cancelling a canceled run is fine; a finished one is a conflict)."""
    session, out = begin(ctx, as_json)
    run = session.client.cancel(session.client.run(run_id).id)
    if as_json:
        out.json({"run": run})
    else:
        out.line(f"run {run.short_id}: {run.state}")
