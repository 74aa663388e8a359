// The router: the URL fragment names the view (`#/runs?job=x`, `#/runs/<id>`, `#/jobs`, `#/clusters`,
// `#/models/<name>/<version>`); each view mounts into <main> and returns a function that stops its polling.
"use strict";

(() => {
  const { views, problem } = window.AzTrain;
  const main = document.getElementById("main");
  // The view of each first path segment: `#/runs` lists runs, `#/runs/<id>` shows one.
  const ROUTES = {
    runs: (parts) => (parts.length ? "run" : "runs"),
    jobs: () => "jobs",
    clusters: () => "clusters",
    models: () => "models",
    cost: () => "cost",
    deadletters: () => "deadletters",
  };
  let stop = () => {};

  function show(moveFocus) {
    const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
    const [section, ...parts] = path.split("/").filter(Boolean).map(decodeURIComponent);
    if (!ROUTES[section]) {
      location.replace("#/runs"); // fires hashchange, which shows the runs
      return;
    }
    const view = ROUTES[section](parts);
    stop();
    problem(null);
    main.replaceChildren();
    for (const link of document.querySelectorAll("nav a")) {
      if (link.dataset.view === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    stop = views[view](main, new URLSearchParams(query), parts);
    document.title = `${main.querySelector("h1")?.textContent ?? section} · aztrain`;
    if (moveFocus) main.focus();
  }

  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault(); // the fragment names views: focus the content instead of navigating
    main.focus();
  });
  window.addEventListener("hashchange", () => show(true));
  show(false);
})();
