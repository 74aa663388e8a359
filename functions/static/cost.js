// Cost: what each team spent this month (finished runs' final cost, running runs' live cost), per job and per day.
"use strict";

(() => {
  const { h, api, poll, table, num, emptyRow } = window.AzTrain;
  const REFRESH_MS = 5000;

  const money = (value) => value.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  function section(title, columns, first) {
    const list = table(title, [...columns, "Cost", "Live", "GPU-hours", "Runs"]);
    const fill = (rows, empty) =>
      list.body.replaceChildren(
        ...(rows.length
          ? rows.map((s) =>
              list.row(
                { "data-team": s.team },
                ...first(s),
                num(money(s.cost)),
                num(money(s.live)),
                num(s.gpu_hours.toFixed(2)),
                num(String(s.runs)),
              ),
            )
          : [emptyRow(columns.length + 4, empty)]),
      );
    return { element: list.element, fill };
  }

  window.AzTrain.views.cost = (root) => {
    const heading = h("p", {}, "");
    const teams = section("Spend per team this month", ["Team", "Budget"], (s) => [
      s.team,
      s.budget === null ? "–" : money(s.budget),
    ]);
    const jobs = section("Spend per job", ["Team", "Job"], (s) => [s.team, s.job]);
    const days = section("Spend per day", ["Team", "Day"], (s) => [s.team, s.day]);
    root.append(h("h1", {}, "Cost"), heading, teams.element, jobs.element, days.element);
    return poll(async () => {
      const report = await api.get("cost");
      heading.textContent =
        `${report.month}, in ${report.currency}; prices: ${report.prices.region}, ${report.prices.fetched}`;
      teams.fill(report.teams, "Nothing spent this month yet.");
      jobs.fill(report.jobs, "No job has run this month.");
      days.fill(report.days, "No day with spend this month.");
    }, REFRESH_MS);
  };
})();
