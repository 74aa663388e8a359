// One run: its state timeline, live loss and accuracy per epoch, the log tail, outputs, snapshot and
// lineage, and cancel (after a confirmation). Polled until the run has ended and its log is read.
"use strict";

(() => {
  const { h, route, api, ApiError, poll, seconds, since, time, number, badge, shortId, runDuration, table, lineChart } =
    window.AzTrain;
  const REFRESH_MS = 1500;
  const FIRST_LOG_LINES = 200;
  const LOG_KEEP_CHARS = 200_000; // what the page holds of a long log: its end

  function section(title, ...content) {
    return h("section", { "aria-label": title }, h("h2", {}, title), ...content);
  }

  /** Applied transitions as [state, entered, left] (left: the next transition, or null while current). */
  function stays(history) {
    const applied = history.filter((t) => t.applied);
    return applied.map((t, i) => [t.to, t.at, applied[i + 1]?.at ?? null]);
  }

  function timeline(run) {
    const spans = stays(run.history).map(([state, entered, left]) => ({
      state,
      entered,
      spent: left ? since(entered, Date.parse(left)) : run.terminal ? null : since(entered),
    }));
    return h(
      "ol",
      { class: "timeline" },
      spans.map(({ state, entered, spent }) =>
        h(
          "li",
          { class: `state-${state.toLowerCase()}`, "data-state": state },
          h("span", { class: "bar-track" }, h("span", { class: "bar", "data-seconds": spent ?? 0 })),
          badge(state),
          " ",
          h("span", { class: "spent" }, spent === null ? "ended" : seconds(spent)),
          " ",
          h("span", { class: "muted" }, "from ", time(entered)),
        ),
      ),
    );
  }

  function sizeBars(list) {
    // Bar widths by CSSOM (the page's CSP allows no inline style attributes): share of the longest stay.
    const bars = [...list.querySelectorAll(".bar")];
    const longest = Math.max(1e-9, ...bars.map((b) => Number(b.dataset.seconds)));
    for (const bar of bars) bar.style.width = `${Math.max(2, (100 * Number(bar.dataset.seconds)) / longest)}%`;
  }

  function history(run) {
    const rows = table("Every transition, including the ones the state machine refused", [
      "#",
      "From",
      "To",
      "Applied",
      "Cause",
      "At",
      "Detail",
    ]);
    rows.body.append(
      ...run.history.map((t) =>
        rows.row({}, t.seq, t.from ?? "–", t.to, t.applied ? "yes" : "ignored", t.cause, time(t.at), t.detail),
      ),
    );
    return h("details", {}, h("summary", {}, `History (${run.history.length} transitions)`), rows.element);
  }

  function facts(run) {
    const entries = [
      ["Job", h("a", { href: `#/runs?job=${encodeURIComponent(run.job)}` }, run.job)],
      ["Trigger", run.trigger],
      ["Source", run.source || "–"],
      ["Cause", run.cause || "–"],
      ["Created", time(run.created_at)],
      ["Duration", runDuration(run)],
      ["Cluster", run.cluster ? h("a", { href: route("clusters") }, run.cluster) : "–"],
      ["Backend job", run.backend_job_id || "–"],
      ["Attempt", run.attempt],
    ];
    if (run.error) entries.push(["Error", h("span", { class: "error" }, run.error)]);
    if (run.waiting_reason) entries.push(["Waiting", h("span", { class: "waiting" }, run.waiting_reason)]);
    return h(
      "dl",
      { class: "facts" },
      entries.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
    );
  }

  function charts({ epochs, final }) {
    const series = (metric) => [
      { name: metric, points: epochs.filter((e) => typeof e[metric] === "number").map((e) => [e.epoch, e[metric]]) },
    ];
    const last = epochs[epochs.length - 1];
    return [
      h(
        "div",
        { class: "charts" },
        lineChart({
          title: "Loss per epoch",
          series: series("loss"),
          xLabel: "epoch",
          log: true,
          empty: "No epoch finished yet.",
        }),
        lineChart({
          title: "Accuracy per epoch",
          series: series("accuracy"),
          xLabel: "epoch",
          yRange: [0, 1],
          empty: "No epoch finished yet.",
        }),
      ),
      h(
        "p",
        { class: "muted", "aria-live": "polite" },
        last
          ? `Epoch ${last.epoch}: loss ${number(last.loss)}, accuracy ${number(last.accuracy)}` +
              (last.samples_per_second ? `, ${Math.round(last.samples_per_second)} samples/s` : "")
          : "",
        final ? ` · final accuracy ${number(final.accuracy)}, loss ${number(final.loss)}` : "",
      ),
    ];
  }

  function outputs(run) {
    if (!run.outputs) return h("p", { class: "muted" }, "A rejected manifest never ran: it has no files.");
    const { container, prefix, ...files } = run.outputs;
    // A finished run's files download through the API with the page's key, as `aztrain download` does.
    const download = (kind, path) => {
      const name = path.split("/").pop();
      if (run.state !== "COMPLETED" || kind === "logs") return "";
      const href = api.href(`runs/${encodeURIComponent(run.id)}/outputs/${encodeURIComponent(name)}`);
      return [" ", h("a", { href, download: name, class: "download" }, `download ${name}`)];
    };
    return h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Folder"),
      h("dd", {}, h("code", {}, `${container}/${prefix}`)),
      Object.entries(files).flatMap(([kind, path]) => [
        h("dt", {}, kind),
        h("dd", {}, h("code", {}, path), download(kind, path)),
      ]),
    );
  }

  function lineage(run, versions) {
    return h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Data snapshot"),
      h("dd", {}, run.snapshot_id ? h("code", {}, run.snapshot_id) : "not taken yet"),
      h("dt", {}, "Manifest hash"),
      h("dd", {}, h("code", {}, run.manifest_hash || "–")),
      h("dt", {}, "Model"),
      h(
        "dd",
        {},
        versions.length
          ? versions.map((v) =>
              h(
                "a",
                { href: route("models", v.name, v.version) },
                `${v.name} v${v.version}${v.promoted ? " (promoted)" : ""}`,
              ),
            )
          : run.terminal
            ? "none registered"
            : "registered when the run completes",
      ),
    );
  }

  function cancelDialog(run, onConfirmed) {
    const keep = h("button", { type: "button", onclick: () => dialog.close() }, "Keep running");
    const dialog = h(
      "dialog",
      { "aria-labelledby": "cancel-title", class: "confirm" },
      h("h2", { id: "cancel-title" }, `Cancel run ${run.id}?`),
      h("p", {}, `The training job of ${run.job} is stopped and its nodes released. This cannot be undone.`),
      h(
        "div",
        { class: "actions" },
        keep,
        h("button", { type: "button", class: "danger", onclick: () => (dialog.close(), onConfirmed()) }, "Cancel run"),
      ),
    );
    dialog.addEventListener("close", () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
    keep.focus(); // the safe choice is the default
  }

  window.AzTrain.views.run = (root, params, [id]) => {
    const heading = h("h1", {}, "Run ", h("code", { title: id }, shortId(id)));
    const status = h("p", { class: "status", role: "status" });
    const actions = h("div", { class: "actions" });
    const parts = {
      facts: h("div"),
      timeline: h("div"),
      history: h("div"),
      metrics: h("div"),
      outputs: h("div"),
      lineage: h("div"),
    };
    const log = h("pre", { class: "log", tabindex: 0, "aria-label": "Log tail" });
    // Follow the end of the log until the reader scrolls up to read, and again once back at the end.
    let following = true;
    log.addEventListener("scroll", () => {
      following = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    });
    root.append(
      h("header", { class: "run-head" }, heading, actions),
      status,
      parts.facts,
      section("Timeline", parts.timeline, parts.history),
      section("Metrics", parts.metrics),
      section("Log", log),
      h("div", { class: "columns" }, section("Outputs", parts.outputs), section("Snapshot and lineage", parts.lineage)),
    );

    let offset = null; // where the log continues; null until its tail was read
    let logText = "";
    let versions = [];
    let shownState = null;

    async function readLog() {
      const response = await api.raw(`runs/${id}/logs`, offset === null ? { tail: FIRST_LOG_LINES } : { offset });
      offset = Number(response.headers.get("X-Log-Next-Offset"));
      const text = await response.text();
      if (!text) return false;
      logText = (logText + text).slice(-LOG_KEEP_CHARS);
      log.textContent = logText;
      if (following) log.scrollTop = log.scrollHeight;
      return true;
    }

    async function cancel() {
      status.textContent = "Asking the run to stop…";
      try {
        const canceled = await api.post(`runs/${id}/cancel`);
        status.textContent = `Cancel requested: the run is ${canceled.state}.`;
      } catch (error) {
        status.textContent = `Could not cancel: ${error.message}`;
      }
    }

    function showActions(run) {
      if (run.state === shownState) return; // keep the button (and its focus) while nothing changed
      shownState = run.state;
      const cancellable = !run.terminal && run.state !== "CANCEL_REQUESTED";
      actions.replaceChildren(
        badge(run.state),
        cancellable
          ? h("button", { type: "button", class: "danger", onclick: () => cancelDialog(run, cancel) }, "Cancel run…")
          : "",
      );
    }

    async function tick() {
      let run;
      try {
        run = await api.get(`runs/${id}`, { all: true }); // refused transitions too, for the history
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 404) throw error;
        status.textContent = `There is no run ${id}.`;
        return false;
      }
      const [metrics, grew] = await Promise.all([api.get(`runs/${id}/metrics`), readLog()]);
      if (run.terminal && !versions.length && run.state === "COMPLETED") {
        versions = (await api.get("models")).models.filter((v) => v.run_id === run.id);
      }
      showActions(run);
      const open = parts.history.querySelector("details")?.open;
      parts.facts.replaceChildren(facts(run));
      parts.timeline.replaceChildren(timeline(run));
      sizeBars(parts.timeline);
      parts.history.replaceChildren(history(run));
      if (open) parts.history.querySelector("details").open = true;
      parts.metrics.replaceChildren(...charts(metrics));
      parts.outputs.replaceChildren(outputs(run));
      parts.lineage.replaceChildren(lineage(run, versions));
      return !(run.terminal && !grew); // done once it has ended and its log has nothing more
    }

    return poll(tick, REFRESH_MS);
  };
})();
