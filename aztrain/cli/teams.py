"""`aztrain cost` and `aztrain teams ...`: what teams spent, and (admins) their quotas and budgets."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from aztrain.api import teams as api
from aztrain.cli.app import JsonOption, app, begin, examples
from aztrain.cli.client import Client
from aztrain.cli.output import Out


class Rows(StrEnum):
    TEAM = "team"
    JOB = "job"
    DAY = "day"


@app.command(
    epilog=examples("aztrain cost", "aztrain cost --month 2026-11 --team vision --by job", "aztrain cost --json")
)
def cost(
    ctx: typer.Context,
    month: Annotated[str | None, typer.Option(help="YYYY-MM (UTC); default: this month.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's runs.")] = None,
    by: Annotated[Rows, typer.Option(help="One row per team, per job or per day.")] = Rows.TEAM,
    as_json: JsonOption = False,
) -> None:
    """What each team spent in a month: finished runs' final cost, and the live cost of runs still running."""
    session, out = begin(ctx, as_json)
    report = session.client.get(api.CostReport, "cost", month=month or "", team=team or "")
    if as_json:
        out.json(report.model_dump(mode="json"))
        return
    out.line(f"{report.month}, in {report.currency} (prices: {report.prices.region}, {report.prices.fetched})")
    rows = {Rows.TEAM: report.teams, Rows.JOB: report.jobs, Rows.DAY: report.days}[by]
    if not rows:
        out.line("no spend")
        return
    named = () if by is Rows.TEAM else (by.value.upper(),)
    table = out.table("TEAM", *named, "COST", "LIVE", "GPU-H", "RUNS", "BUDGET")
    for spend in rows:
        where = {Rows.TEAM: (), Rows.JOB: (spend.job or "",), Rows.DAY: (spend.day or "",)}[by]
        budget = "—" if spend.budget is None else f"{spend.budget:,.2f}"
        table.add_row(
            spend.team,
            *where,
            f"{spend.cost:,.2f}",
            f"{spend.live:,.2f}",
            f"{spend.gpu_hours:,.2f}",
            str(spend.runs),
            budget,
        )
    out.console.print(table)


teams = typer.Typer(
    help="Teams and their bounds: GPUs at once, GPU-hours per 30 days, monthly budget, priorities (set: Admin).",
    no_args_is_help=True,
    epilog=examples("aztrain teams list", "aztrain --user root teams set vision --gpus 8 --budget 2000"),
)
app.add_typer(teams, name="teams")

_COLUMNS = ("TEAM", "GPUS", "GPU-H/30D", "BUDGET/MONTH", "PRIORITY", "MAX", "WEIGHT")


def _row(team: api.TeamView) -> list[str]:
    def bound(value: float | None) -> str:
        return "—" if value is None else f"{value:,.0f}"

    return [
        team.name,
        bound(team.gpus),
        bound(team.gpu_hours),
        bound(team.monthly_budget),
        str(team.default_priority),
        str(team.max_priority),
        f"{team.weight:g}",
    ]


def _show(out: Out, listed: api.TeamList, as_json: bool) -> None:
    if as_json:
        out.json(listed.model_dump(mode="json"))
        return
    if not listed.teams:
        out.line("no teams")
        return
    table = out.table(*_COLUMNS)
    for team in listed.teams:
        table.add_row(*_row(team))
    out.console.print(table)


@teams.command("list", epilog=examples("aztrain teams list", "aztrain teams list --json"))
def list_teams(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every team and its bounds."""
    session, out = begin(ctx, as_json)
    _show(out, session.client.get(api.TeamList, "teams"), as_json)


@teams.command(
    "set",
    epilog=examples(
        "aztrain teams set vision --gpus 8 --gpu-hours 500 --budget 2000",
        "aztrain teams set nlp --gpus 4 --default-priority 1 --max-priority 5 --weight 2",
    ),
)
def set_team(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The team: 3-32 lowercase letters, digits or '-'.")],
    gpus: Annotated[int | None, typer.Option(min=0, help="GPUs its runs may hold at once.")] = None,
    gpu_hours: Annotated[float | None, typer.Option(min=0, help="GPU-hours per rolling 30 days.")] = None,
    budget: Annotated[float | None, typer.Option(min=0, help="Money per calendar month (UTC).")] = None,
    default_priority: Annotated[int, typer.Option(min=0, max=100, help="Priority of runs that name none.")] = 0,
    max_priority: Annotated[int, typer.Option(min=0, max=100, help="The highest priority a run may ask.")] = 0,
    weight: Annotated[float, typer.Option(min=0.001, help="Its share of contended GPUs against others'.")] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Create a team or replace its bounds with those given (a bound not given does not bound). Needs Admin."""
    session, out = begin(ctx, as_json)
    bounds = api.TeamBounds(
        gpus=gpus,
        gpu_hours=gpu_hours,
        monthly_budget=budget,
        default_priority=default_priority,
        max_priority=max_priority,
        weight=weight,
    )
    body = bounds.model_dump_json().encode()
    team = api.TeamView.model_validate(session.client.send("PUT", f"teams/{name}", body).json())
    _show(out, api.TeamList(teams=[team]), as_json)


@teams.command("delete", epilog=examples("aztrain teams delete vision"))
def delete_team(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The team whose bounds to forget (its runs keep their team).")],
    as_json: JsonOption = False,
) -> None:
    """Forget a team's bounds. Needs Admin."""
    session, out = begin(ctx, as_json)
    _show(out, api.TeamList.model_validate(session.client.send("DELETE", f"teams/{name}").json()), as_json)


def show_dry_run(out: Out, client: Client, manifest: bytes, *, as_json: bool) -> None:
    """`aztrain submit --dry-run`: what the API says a submit would do now."""
    answer = api.DryRunView.model_validate(client.send("POST", "jobs", manifest, params={"dry_run": "true"}).json())
    if as_json:
        out.json(answer.model_dump(mode="json"))
        return
    where = answer.placement
    on = "serverless nodes" if where.serverless else f"cluster {where.cluster}"
    out.line(f"job {answer.job} of team {answer.team} (priority {answer.priority}), nothing recorded:")
    out.line(f"  placement  {where.nodes} x {where.vm_size} ({where.tier}, {where.gpus} GPUs) on {on}, {where.region}")
    out.line(f"  cost       at most {answer.cost_bound:,.2f} {answer.currency} ({where.node_hour:g} a node-hour)")
    expected = "no earlier runs" if answer.expected_cost is None else f"{answer.expected_cost:,.2f} {answer.currency}"
    out.line(f"  expected   {expected}")
    if answer.refusals:
        out.line("  refused    " + "; ".join(answer.refusals))
    elif answer.admits_now:
        out.line("  admission  would start now")
    else:
        wait = answer.estimated_wait_seconds
        estimate = "unknown" if wait is None else f"about {wait / 60:,.0f} min"
        out.line(f"  admission  would wait: {answer.waiting_reason} (estimated wait {estimate})")
