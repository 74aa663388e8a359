// Jobs and their retraining windows: what each watches, the arrivals so far, when the window fires
// (or why it does not), and the job's last runs.
"use strict";

(() => {
  const { h, route, api, poll, seconds, since, time, number, badge, runLink, runDuration, table, num, emptyRow } =
    window.AzTrain;
  const REFRESH_MS = 3000;
  const LAST_RUNS = 5;

  function summary(manifest) {
    const { compute, trainer } = manifest;
    const parts = [`${compute.nodes} × ${compute.processes_per_node} processes`, compute.profile || compute.vm_size];
    if (trainer.args && trainer.args.epochs) parts.push(`${trainer.args.epochs} epochs`);
    return parts.filter(Boolean).join(" · ");
  }

  /** When `at` is, from now: "in 3 min 2 s", or "due". */
  const fromNow = (at) => (since(at) < 0 ? `in ${seconds(-since(at))}` : "due");

  function blocker(b) {
    return h(
      "li",
      { "data-kind": b.kind },
      b.reason,
      b.until ? [" (until ", time(b.until), `, ${fromNow(b.until)})`] : "",
      b.run ? [" ", runLink(b.run)] : "",
    );
  }

  function windowFacts(job, pending) {
    if (!job.watch) return h("p", { class: "muted" }, "Does not retrain on data arrival.");
    const fires = pending.fires_at ? [time(pending.fires_at), ` (${fromNow(pending.fires_at)})`] : ["–"];
    return h(
      "dl",
      { class: "facts window" },
      h("dt", {}, "Arrivals"),
      h("dd", { class: "arrivals" }, String(pending.arrivals)),
      h("dt", {}, "Window"),
      h("dd", { class: "action" }, pending.action),
      h("dt", {}, "Fires"),
      h("dd", {}, fires),
      h("dt", {}, pending.action === "launch" ? "Why now" : "Why not yet"),
      h("dd", { class: "reason" }, pending.reason),
      // One blocker is the reason above; several are all listed, so a user sees everything in the way.
      pending.blockers.length > 1
        ? [h("dt", {}, "Held back by"), h("dd", {}, h("ul", { class: "blockers" }, pending.blockers.map(blocker)))]
        : "",
      h("dt", {}, "Next"),
      h("dd", { class: "next" }, pending.next),
    );
  }

  function lastRuns(job, runs) {
    const list = table(`Last runs of ${job.name}`, ["Run", "State", "Trigger", "Duration", "Accuracy"]);
    list.body.append(
      ...(runs.length
        ? runs.map((run) =>
            list.row(
              {},
              runLink(run.id),
              badge(run.state),
              run.trigger,
              runDuration(run),
              num(number(run.metrics.accuracy)),
            ),
          )
        : [emptyRow(5, "No runs yet.")]),
    );
    return list.element;
  }

  async function card(job) {
    const [pending, { runs }] = await Promise.all([
      api.get(`jobs/${job.name}/window`),
      api.get("runs", { job: job.name, limit: LAST_RUNS }),
    ]);
    return h(
      "article",
      { class: "card", "data-job": job.name, "aria-labelledby": `job-${job.name}` },
      h("h2", { id: `job-${job.name}` }, job.name),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Watches"),
        h("dd", {}, job.watch ? h("code", {}, job.watch) : "nothing"),
        h("dt", {}, "Compute"),
        h("dd", {}, summary(job.manifest)),
        h("dt", {}, "Updated"),
        h("dd", {}, time(job.updated_at)),
      ),
      h("h3", {}, "Retraining window"),
      windowFacts(job, pending),
      lastRuns(job, runs),
      h("p", {}, h("a", { href: `#/runs?job=${encodeURIComponent(job.name)}` }, `All runs of ${job.name}`)),
    );
  }

  window.AzTrain.views.jobs = (root) => {
    const cards = h("div", { class: "cards" });
    root.append(h("h1", {}, "Jobs and retraining windows"), cards);
    return poll(async () => {
      const { jobs } = await api.get("jobs");
      const rendered = await Promise.all(jobs.map(card));
      cards.replaceChildren(
        ...(rendered.length ? rendered : [h("p", { class: "empty" }, "No jobs yet: drop a manifest.")]),
      );
    }, REFRESH_MS);
  };
})();
