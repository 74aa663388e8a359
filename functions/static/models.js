// Models: each model's versions with their metrics, the current (latest promoted) one marked, a plot
// comparing versions, and one version's lineage: model → run → snapshot → blobs.
"use strict";

(() => {
  const { h, route, api, poll, time, number, badge, runLink, table, num, emptyRow, lineChart } = window.AzTrain;
  const REFRESH_MS = 5000;

  function versionsTable(name, versions, current, chosen) {
    const list = table(`Versions of ${name}`, ["Version", "Run", "Accuracy", "Loss", "Registered", "Promotion"]);
    list.body.append(
      ...versions.map((v) =>
        list.row(
          { class: v.version === chosen ? "chosen" : null, "data-version": v.version },
          h(
            "a",
            { href: route("models", name, v.version), "aria-current": v.version === chosen ? "true" : null },
            `v${v.version}`,
          ),
          runLink(v.run_id),
          num(number(v.metrics.accuracy)),
          num(number(v.metrics.loss)),
          time(v.registered_at),
          h(
            "td",
            {},
            v.version === current
              ? h("span", { class: "badge current" }, "★ current")
              : v.promoted
                ? "promoted"
                : "not promoted",
            v.gate ? h("span", { class: "muted" }, ` (${v.gate})`) : "",
          ),
        ),
      ),
    );
    return list.element;
  }

  function comparison(versions) {
    const series = (metric) => [
      {
        name: metric,
        points: versions
          .filter((v) => typeof v.metrics[metric] === "number")
          .map((v) => [v.version, v.metrics[metric]]),
      },
    ];
    const empty = "No version has this metric.";
    return h(
      "div",
      { class: "charts" },
      lineChart({ title: "Accuracy by version", series: series("accuracy"), xLabel: "version", yRange: [0, 1], empty }),
      lineChart({ title: "Loss by version", series: series("loss"), xLabel: "version", empty, log: true }),
    );
  }

  async function lineage(name, version) {
    const { model, run, snapshot, data_read, code } = await api.get(`models/${name}/versions/${version}`);
    // What the trainer reported reading, beside what it was given: a skipped file never looks consumed.
    const read = (b) => (b.read === null ? "not reported" : b.read ? "read" : "not read");
    const blobs = table(`Blobs of snapshot ${snapshot.id}`, ["Blob", "Size (bytes)", "ETag", "Read by the trainer"]);
    blobs.body.append(
      ...(snapshot.blobs.length
        ? snapshot.blobs.map((b) =>
            blobs.row(
              {},
              h("code", {}, `${snapshot.container}/${b.name}`),
              num(b.size),
              h("code", {}, b.etag),
              read(b),
            ),
          )
        : [emptyRow(4, "The snapshot lists no blobs.")]),
    );
    const readCount = snapshot.blobs.filter((b) => b.read).length;
    return h(
      "section",
      { class: "lineage", "aria-label": `Lineage of ${name} v${version}` },
      h("h2", {}, `Lineage of ${name} v${version}`),
      h(
        "ol",
        { class: "chain" },
        h("li", {}, "Model ", h("strong", {}, `${model.name} v${model.version}`), " ", h("code", {}, model.artifact)),
        h(
          "li",
          {},
          "Run ",
          runLink(run.id),
          " ",
          badge(run.state),
          ` (${run.trigger})`,
        ),
        h(
          "li",
          {},
          "Code ",
          code ? h("code", {}, code.id) : "the built-in trainer",
          code ? ` (${code.files.length} file(s))` : "",
        ),
        h(
          "li",
          {},
          "Snapshot ",
          h("code", {}, snapshot.id),
          ` of ${snapshot.container}/${snapshot.prefix}: ${snapshot.blobs.length} blob(s), `,
          data_read === null ? "the trainer did not report which it read" : `${readCount} read by the trainer`,
        ),
      ),
      blobs.element,
    );
  }

  window.AzTrain.views.models = (root, params, [name, version]) => {
    const chosen = version ? Number(version) : null;
    const models = h("div");
    const detail = h("div");
    root.append(h("h1", {}, "Models"), detail, models);
    if (name && chosen) {
      lineage(name, chosen).then(
        (section) => detail.replaceChildren(section),
        (error) => detail.replaceChildren(h("p", { class: "error" }, `No lineage: ${error.message}`)),
      );
    }
    return poll(async () => {
      const { models: all } = await api.get("models");
      const byName = new Map();
      for (const v of all) byName.set(v.name, [...(byName.get(v.name) || []), v]);
      const shown = name ? [[name, byName.get(name) || []]] : [...byName];
      models.replaceChildren(
        ...(shown.length
          ? shown.map(([model, versions]) => {
              const current = Math.max(0, ...versions.filter((v) => v.promoted).map((v) => v.version)) || null;
              return h(
                "article",
                { class: "card", "data-model": model },
                h("h2", {}, h("a", { href: route("models", model) }, model)),
                versions.length
                  ? [versionsTable(model, versions, current, name === model ? chosen : null), comparison(versions)]
                  : h("p", { class: "empty" }, "No versions."),
              );
            })
          : [h("p", { class: "empty" }, "No model registered yet: a completed run registers one.")]),
      );
    }, REFRESH_MS);
  };
})();
