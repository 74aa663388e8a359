// A small SVG line chart: one or more series of (x, y) points, axes with their extremes, a marker per
// point (with its value as a tooltip). Colours come from the style sheet, so light and dark both work.
"use strict";

(() => {
  const { h, svg } = window.AzTrain;
  const WIDTH = 480;
  const HEIGHT = 220;
  const PAD = { left: 56, right: 14, top: 12, bottom: 36 };

  function extent(values, fixed) {
    let [low, high] = [Math.min(...values), Math.max(...values)];
    if (fixed) [low, high] = [Math.min(low, fixed[0]), Math.max(high, fixed[1])];
    if (low === high) {
      // A constant series gets an axis around its value, on its own scale, never below 0 for a positive value.
      const pad = Math.abs(low) * 0.1 || 0.5;
      [low, high] = [low >= 0 ? Math.max(0, low - pad) : low - pad, high + pad];
    }
    return [low, high];
  }

  function label(value) {
    if (Number.isInteger(value)) return String(value);
    // Three significant digits; tiny losses in exponent form, so every tick fits beside the axis.
    return Math.abs(value) < 0.01 ? value.toExponential(1) : String(Number(value.toPrecision(3)));
  }

  /**
   * A figure titled `title` plotting `series` ([{name, points: [[x, y]]}]), or `empty` when no series
   * has a point. `yRange` widens the y axis to at least that range (accuracy: [0, 1]).
   */
  function lineChart({ title, series, xLabel, yRange, empty, log }) {
    const points = series.flatMap((s) => s.points);
    const figure = h("figure", { class: "chart" }, h("figcaption", {}, title));
    if (!points.length) {
      figure.append(h("p", { class: "empty" }, empty));
      return figure;
    }

    const [x0, x1] = extent(points.map(([x]) => x));
    // A loss falls by orders of magnitude: on a log axis its later epochs stay readable (values must be > 0).
    const logScale = Boolean(log) && points.every(([, y]) => y > 0);
    figure.dataset.scale = logScale ? "log" : "linear";
    const along = logScale ? Math.log10 : (y) => y;
    const [v0, v1] = extent(
      points.map(([, y]) => along(y)),
      yRange && yRange.map(along),
    );
    const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (WIDTH - PAD.left - PAD.right);
    const sy = (y) => HEIGHT - PAD.bottom - ((along(y) - v0) / (v1 - v0)) * (HEIGHT - PAD.top - PAD.bottom);
    const [y0, y1] = logScale ? [10 ** v0, 10 ** v1] : [v0, v1];
    const bottom = HEIGHT - PAD.bottom;

    const plot = svg(
      "svg",
      { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `${title}: ${points.length} points` },
      svg("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: bottom }),
      svg("line", { class: "axis", x1: PAD.left, y1: bottom, x2: WIDTH - PAD.right, y2: bottom }),
      [y0, y1].map((y) =>
        svg("text", { class: "tick", x: PAD.left - 6, y: sy(y) + 4, "text-anchor": "end" }, label(y)),
      ),
      [x0, x1].map((x) => svg("text", { class: "tick", x: sx(x), y: bottom + 16, "text-anchor": "middle" }, label(x))),
      svg(
        "text",
        { class: "tick", x: (WIDTH + PAD.left) / 2, y: HEIGHT - 4, "text-anchor": "middle" },
        logScale ? `${xLabel} (log scale)` : xLabel,
      ),
      series.map((s, index) =>
        svg(
          "g",
          { class: `series series-${index}` },
          svg("polyline", { points: s.points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" ") }),
          s.points.map(([x, y]) =>
            svg(
              "circle",
              { class: "point", cx: sx(x), cy: sy(y), r: 3.5 },
              svg("title", {}, `${s.name} ${xLabel} ${label(x)}: ${label(y)}`),
            ),
          ),
        ),
      ),
    );
    figure.append(plot);
    if (series.length > 1) {
      figure.append(
        h(
          "ul",
          { class: "legend" },
          series.map((s, i) => h("li", { class: `series-${i}` }, s.name)),
        ),
      );
    }
    return figure;
  }

  window.AzTrain.lineChart = lineChart;
})();
