"""`aztrain cost` and `aztrain teams ...`: what teams spent, and (admins) their quotas and budgets."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from aztrain.api import teams as api
from aztrain.cli.app import JsonOption, app, begin, examples


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
    report = api.CostReport.model_validate(session.client.request("GET", "cost", month=month or "", team=team or ""))
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
