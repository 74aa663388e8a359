// Runs: newest first, filtered by job and state, refreshed every few seconds.
"use strict";

(() => {
  const { h, api, poll, problem, table, num, emptyRow, badge, runLink, runDuration, number, time } = window.AzTrain;
  const STATES = [
    "ACCEPTED",
    "PROVISIONING",
    "SUBMITTED",
    "QUEUED",
    "RUNNING",
    "CANCEL_REQUESTED",
    "COMPLETED",
    "FAILED",
    "CANCELED",
    "REJECTED",
  ];
  const REFRESH_MS = 2000;

  function select(name, label, options, chosen, onchange) {
    return h(
      "label",
      {},
      label,
      h(
        "select",
        { name, onchange },
        options.map(([value, text]) => h("option", { value, selected: value === chosen }, text)),
      ),
    );
  }

  /** Its accuracy, or why it has none: the first problem of a rejected manifest, an error, a wait. */
  function outcome(run) {
    const problems = run.problems || [];
    const first = problems.length ? `${problems[0].field}: ${problems[0].message}` : "";
    const why = first || (run.error || "").split("\n")[0] || (run.waiting_reason ? `waiting: ${run.waiting_reason}` : "");
    if (!why) return num(number(run.metrics.accuracy));
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
    return h("td", { class: "why", title: run.error || why }, why + more);
  }

  window.AzTrain.views.runs = (root, params) => {
    const filters = { job: params.get("job") || "", state: params.get("state") || "" };
    const runs = table("Runs, newest first", ["Run", "Job", "State", "Trigger", "Created", "Duration", "Accuracy / why"]);
    const jobs = select("job", "Job", [["", "all jobs"]], filters.job, changed);
    const states = select("state", "State", [["", "all states"], ...STATES.map((s) => [s, s])], filters.state, changed);
    root.append(h("h1", {}, "Runs"), h("form", { class: "filters", role: "search" }, jobs, states), runs.element);

    function changed(event) {
      filters[event.target.name] = event.target.value;
      // Shareable without re-mounting the view (which would take the focus away from the filter).
      const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();
      history.replaceState(null, "", `#/runs${query ? `?${query}` : ""}`);
      stop();
      stop = poll(refresh, REFRESH_MS);
    }

    async function fillJobs() {
      const { jobs: known } = await api.get("jobs");
      const names = new Set(known.map((j) => j.name));
      if (filters.job) names.add(filters.job); // a rejected manifest's job is not in the jobs table
      const chooser = jobs.querySelector("select");
      chooser.replaceChildren(
        h("option", { value: "" }, "all jobs"),
        ...[...names].sort().map((name) => h("option", { value: name, selected: name === filters.job }, name)),
      );
    }

    async function refresh() {
      const asked = { ...filters };
      const { runs: found } = await api.get("runs", asked);
      // An answer to filters changed meanwhile would show the wrong runs: the next tick asks again.
      if (asked.job !== filters.job || asked.state !== filters.state) return;
      runs.body.replaceChildren(
        ...(found.length
          ? found.map((run) =>
              runs.row(
                { "data-run": run.id },
                runLink(run.id),
                run.job,
                h("td", { class: "state", title: run.waiting_reason || "" }, badge(run.state)),
                run.trigger,
                time(run.created_at),
                runDuration(run),
                outcome(run),
              ),
            )
          : [emptyRow(7, "No runs match.")]),
      );
    }

    fillJobs().catch((error) => problem(`Could not list jobs: ${error.message}`));
    let stop = poll(refresh, REFRESH_MS);
    return () => stop();
  };
})();
