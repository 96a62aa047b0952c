// The compared runs' curves overlaid: one metric (any series the runs logged, in the order of the lab's
// metric keys), one trace per run named by its id, experiment and differing config values; log axes.
// A finished run's series are read once (downsampled server-side); a running one's at every update.

import { api } from "../api.js";
import { config as plotConfig, emptyChart, layout, pngButton, purge, react } from "../charts.js";
import { h } from "../dom.js";
import { isFinished } from "../statuses.js";

const CURVE_POINTS = 1000;      // per series and run: enough for a chart ~1000 px wide

/** The panel: { node, update(view, seriesOrder), destroy() }, seriesOrder the lab's metric keys. */
export function compareCurvesPanel() {
  const chart = h("div.chart.tall", { dataset: { chart: "compare-curves" } });
  const metricSelect = h("select", { dataset: { control: "metric" }, title: "The metric to overlay", onchange: () => draw() });
  const logX = h("input", { type: "checkbox", dataset: { control: "log-x" }, onchange: () => draw() });
  const logY = h("input", { type: "checkbox", dataset: { control: "log-y" }, onchange: () => draw() });
  const node = h("div.panel", { dataset: { section: "compare-curves" } },
    h("div.panel-head", h("h2", "Curves"),
      h("div.actions", metricSelect, h("label.nowrap", logX, " log x"), h("label.nowrap", logY, " log y"),
        pngButton(() => chart, "compare-runs"))),
    chart);
  const cache = new Map();           // run id → { series, finished }
  let view = null;
  emptyChart(chart, "Loading…");

  async function seriesOf(run) {
    const cached = cache.get(run.id);
    if (cached?.finished) return cached.series;
    try {
      const data = await api(`/api/runs/${run.id}/metrics`, { query: { max_points: CURVE_POINTS } });
      cache.set(run.id, { series: data.series || {}, finished: isFinished(run.status) });
    } catch (err) {
      if (!cached) cache.set(run.id, { series: {}, finished: false, error: err.message });
    }
    return cache.get(run.id).series;
  }

  function paintOptions(seriesOrder) {
    const present = new Set(view.runs.flatMap((run) => Object.keys(cache.get(run.id)?.series || {})));
    const keys = [...seriesOrder.filter((key) => present.has(key)), ...[...present].filter((key) => !seriesOrder.includes(key)).sort()];
    const current = metricSelect.value;
    if ([...metricSelect.options].map((o) => o.value).join() !== keys.join()) {
      metricSelect.replaceChildren(...keys.map((key) => h("option", { value: key }, key)));
    }
    metricSelect.value = keys.includes(current) ? current : keys.includes("test_acc") ? "test_acc" : keys[0] || "";
  }

  async function draw() {
    const metric = metricSelect.value;
    if (!view?.runs.length || !metric) { emptyChart(chart, view?.runs.length ? "These runs have logged no points yet." : "No runs to draw."); return; }
    const traces = view.runs.map((run) => {
      const s = cache.get(run.id)?.series?.[metric] || { steps: [], values: [] };
      return {
        type: "scatter", mode: s.steps.length < 60 ? "lines+markers" : "lines", name: view.labels.get(run.id),
        x: s.steps, y: s.values, line: { width: 1.6, color: view.colors.get(run.id) }, marker: { size: 4 },
        hovertemplate: `#${run.id}<br>step %{x}<br>${metric} %{y:.4g}<extra></extra>`,
      };
    });
    await react(chart, traces, layout({
      xaxis: { title: { text: "step" }, type: logX.checked ? "log" : "linear" },
      yaxis: { title: { text: metric }, type: logY.checked ? "log" : "linear" },
      showlegend: true, legend: { orientation: "h", x: 0, xanchor: "left", y: -0.16, yanchor: "top", font: { size: 11 } },
      margin: { l: 56, r: 12, t: 12, b: 42 },
    }), plotConfig("compare-runs"));
    node.dataset.loaded = "true";
  }

  return {
    node,
    async update(next, seriesOrder) {
      view = next;
      await Promise.all(view.runs.map(seriesOf));
      paintOptions(seriesOrder);
      await draw();
    },
    destroy() { purge(chart); },
  };
}
