// Clusters: desired vs observed nodes, the runs on them, and how long the last scale-down to zero took.
"use strict";

(() => {
  const { h, api, poll, seconds, since, time, table, num, emptyRow } = window.AzTrain;
  const REFRESH_MS = 2000;

  function nodes(cluster) {
    const most = Math.max(1, cluster.desired_nodes, cluster.observed_nodes);
    return h(
      "div",
      { class: "nodes" },
      h("meter", { min: 0, max: most, value: cluster.observed_nodes, "aria-label": "observed nodes" }),
      ` ${cluster.observed_nodes} observed / ${cluster.desired_nodes} desired`,
    );
  }

  function toZero(cluster) {
    if (cluster.desired_nodes > 0) return "in use";
    if (cluster.observed_nodes > 0 && cluster.last_scale_at) {
      return `scaling down for ${seconds(since(cluster.last_scale_at))}`;
    }
    return cluster.seconds_to_zero === null ? "–" : `${seconds(cluster.seconds_to_zero)} after the last run`;
  }

  window.AzTrain.views.clusters = (root) => {
    const list = table("Desired and observed nodes of each cluster", [
      "Cluster",
      "Backend",
      "Nodes",
      "Active runs",
      "Last scale action",
      "Time to zero",
    ]);
    const serverless = h(
      "p",
      { class: "muted", "data-serverless-note": "" },
      "Runs on serverless profiles have no cluster, so no row here: their nodes are provisioned for each run " +
        "and released when it ends, leaving no idle tail.",
    );
    root.append(h("h1", {}, "Clusters"), list.element, serverless);
    return poll(async () => {
      const { clusters } = await api.get("clusters");
      list.body.replaceChildren(
        ...(clusters.length
          ? clusters.map((c) =>
              list.row(
                { "data-cluster": c.name },
                c.name,
                c.backend,
                nodes(c),
                num(String(c.active_runs)),
                h("td", {}, c.last_scale_action || "–", c.last_scale_at ? [" · ", time(c.last_scale_at)] : ""),
                toZero(c),
              ),
            )
          : [emptyRow(6, "No cluster has been used yet.")]),
      );
    }, REFRESH_MS);
  };
})();
