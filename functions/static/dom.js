// Shared helpers: building DOM safely, formatting, calling the API with the page's key, polling.
// Everything shown comes from user input (manifests, blob names), so text is only ever set as
// text nodes; no markup string is ever parsed.
"use strict";

window.AzTrain = (() => {
  const SVG_NS = "http://www.w3.org/2000/svg";

  /** An element: `attrs` are attributes (or `on<event>` handlers); strings in `children` become text. */
  function h(tag, attrs = {}, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  /** The same for SVG elements. */
  function svg(tag, attrs = {}, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function build(element, attrs, children) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
      else element.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }

  /** A link to a view of this page: `route("runs", id)` is `#/runs/<id>`, parts URL-encoded. */
  function route(...parts) {
    return "#/" + parts.map((p) => encodeURIComponent(String(p))).join("/");
  }

  // ------------------------------------------------------------------------------ formatting

  function seconds(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const s = Math.max(0, value);
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  }

  const since = (from, to = Date.now()) => (to - Date.parse(from)) / 1000;

  function time(iso) {
    if (!iso) return "–";
    const at = new Date(iso);
    return h("time", { datetime: iso, title: at.toISOString() }, at.toLocaleString());
  }

  function number(value, digits = 3) {
    return typeof value === "number" ? value.toFixed(digits) : "–";
  }

  /** How long a run took, or has taken so far. */
  function runDuration(run) {
    return seconds(since(run.created_at, run.terminal ? Date.parse(run.updated_at) : Date.now()));
  }

  function badge(state) {
    return h("span", { class: `badge state-${state.toLowerCase()}` }, state);
  }

  // ------------------------------------------------------------------------------ the API

  // The key the page was opened with goes on every call (Azure's function-key auth; the dev host ignores it).
  const code = new URLSearchParams(location.search).get("code");
  const apiRoot = location.pathname.replace(/\/dashboard\/?$/, "/");

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  function url(path, params = {}) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
    }
    if (code) query.set("code", code);
    const text = query.toString();
    return apiRoot + path + (text ? `?${text}` : "");
  }

  async function call(method, path, params) {
    const response = await fetch(url(path, params), { method, headers: { Accept: "application/json" } });
    if (!response.ok) {
      let detail = `${response.status} ${response.statusText}`;
      try {
        detail = (await response.json()).detail || detail;
      } catch {
        // not a problem document: the status says it all
      }
      throw new ApiError(response.status, detail);
    }
    return response;
  }

  const api = {
    get: async (path, params) => (await call("GET", path, params)).json(),
    post: async (path, params) => (await call("POST", path, params)).json(),
    raw: (path, params) => call("GET", path, params),
    /** The URL of an API path with the page's key, for a link (a download) rather than a call. */
    href: (path, params) => url(path, params),
  };

  /** A link to a run, by its short id (what the CLI shows too), its full id in the tooltip. */
  function runLink(id) {
    return h("a", { href: route("runs", id), title: id, class: "run-id" }, shortId(id));
  }

  /** A run id's last 6 hex digits: the short id the API, the CLI and this page accept and show. */
  const shortId = (id) => String(id).split("-").pop();

  /** Show (or, with null, clear) a problem in the page's alert region. */
  function problem(message) {
    const region = document.getElementById("problem");
    region.hidden = !message;
    region.textContent = message || "";
  }

  /**
   * Call `tick` now and every `interval` ms until the returned stop() is called or `tick` returns
   * false. Ticks never overlap, a failed tick is shown and retried, and a hidden tab is not polled.
   */
  function poll(tick, interval) {
    let timer = null;
    let stopped = false;
    const run = async () => {
      timer = null;
      if (stopped) return;
      if (document.hidden) {
        document.addEventListener("visibilitychange", run, { once: true });
        return;
      }
      let again = true;
      try {
        again = (await tick()) !== false;
        problem(null);
      } catch (error) {
        problem(`Could not refresh: ${error.message}`);
      }
      if (again && !stopped) timer = setTimeout(run, interval);
    };
    run();
    return () => {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      document.removeEventListener("visibilitychange", run);
    };
  }

  /**
   * A table with a caption and header cells; `row(attrs, ...cells)` makes a body row whose cells are
   * labelled with their heading, so a narrow screen can show each row as a card. A cell is a value,
   * a node, or a ready <td> (see `num`).
   */
  function table(caption, headings) {
    const body = h("tbody");
    const element = h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("caption", {}, caption),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            headings.map((heading) => h("th", { scope: "col" }, heading)),
          ),
        ),
        body,
      ),
    );
    const row = (attrs, ...cells) =>
      h(
        "tr",
        attrs,
        cells.map((cell, i) => {
          const td = cell instanceof HTMLTableCellElement ? cell : h("td", {}, cell);
          td.dataset.label = headings[i];
          return td;
        }),
      );
    return { element, body, row };
  }

  /** A numeric cell, aligned for comparison. */
  const num = (value) => h("td", { class: "num" }, value);

  /** A row spanning the table, for "nothing here yet". */
  function emptyRow(columns, message) {
    return h("tr", {}, h("td", { colspan: columns, class: "empty" }, message));
  }

  return {
    h,
    svg,
    route,
    seconds,
    since,
    time,
    number,
    runDuration,
    badge,
    runLink,
    shortId,
    api,
    ApiError,
    problem,
    poll,
    table,
    num,
    emptyRow,
    views: {},
  };
})();
