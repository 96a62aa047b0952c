// The convergence of chosen runs of an experiment, overlaid: one metric, one curve per run ticked in
// the runs table (by default one run per d of the first group). A finished run's curve is read once.

import { api } from "../api.js";
import { config as plotConfig, emptyChart, layout, pngButton, purge, react } from "../charts.js";
import { PALETTE, fmtValue, h } from "../dom.js";
import { isFinished } from "../statuses.js";
import { onePerD, sameGroup } from "../summary-text.js";

const OVERLAY_POINTS = 600;
const MAX_DEFAULT_OVERLAY = 8;
const METRICS = [["test_acc", "test accuracy"], ["train_acc", "train accuracy"], ["train_loss", "train loss"], ["test_loss", "test loss"]];

function traceName(run, id, fields) {
  const c = run?.config || {};
  return [`#${id}`, run?.role === "baseline" ? "baseline" : `d=${c.d}`, ...fields.map((f) => fmtValue(c[f])), `seed ${c.seed}`].join(" · ");
}

/**
 * The panel: { node, update({ runsById, summary }), redraw(), chooseDefault() → whether it chose, destroy() }.
 * `selection`: the Set of run ids the runs table ticks (shared with it).
 */
export function convergenceOverlayPanel({ experimentId, selection }) {
  const chart = h("div.chart", { dataset: { chart: "overlay" } });
  const metricSelect = h("select", { onchange: () => redraw() }, METRICS.map(([key, label]) => h("option", { value: key }, label)));
  const filename = `experiment-${experimentId}-convergence`;
  const node = h("div.panel",
    h("div.panel-head", h("h2", "Convergence of chosen runs"), h("div.actions", metricSelect, pngButton(() => chart, filename))),
    h("p.faint", { style: { margin: "0 0 6px" } }, "Tick runs in the table below to overlay them."), chart);
  const cache = new Map();          // "<run id>:<metric>" → { series, finished }
  let runsById = new Map(), summary = null;
  emptyChart(chart, "No runs chosen.");

  async function series(id, metric) {
    const run = runsById.get(id);
    const cached = cache.get(`${id}:${metric}`);
    if (cached && run && isFinished(run.status) && cached.finished) return cached.series;
    try {
      const data = await api(`/api/runs/${id}/metrics`, { query: { keys: metric, max_points: OVERLAY_POINTS } });
      const s = data.series?.[metric] || { steps: [], values: [] };
      cache.set(`${id}:${metric}`, { series: s, finished: run && isFinished(run.status) });
      return s;
    } catch { return { steps: [], values: [] }; }
  }

  async function redraw() {
    const ids = [...selection].sort((a, b) => a - b);
    if (!ids.length) { emptyChart(chart, "No runs chosen."); return; }
    const metric = metricSelect.value;
    const all = await Promise.all(ids.map((id) => series(id, metric)));
    const fields = summary?.fields || [];
    const traces = all.map((s, i) => ({
      type: "scatter", mode: metric.startsWith("test") ? "lines+markers" : "lines", name: traceName(runsById.get(ids[i]), ids[i], fields),
      x: s.steps, y: s.values, line: { width: 1.6, color: PALETTE[i % PALETTE.length] }, marker: { size: 4 },
    }));
    await react(chart, traces, layout({
      xaxis: { title: { text: "step" } }, yaxis: { title: { text: METRICS.find(([k]) => k === metric)[1] } },
      showlegend: true, legend: { orientation: "v", x: 1.01, xanchor: "left", y: 1, yanchor: "top", font: { size: 10.5 } },
      margin: { l: 56, r: 8, t: 12, b: 42 },
    }), plotConfig(filename));
  }

  /** One run per d of the first group (its lowest seed): convergence against d at a glance. */
  function chooseDefault() {
    if (selection.size) return false;
    const fields = summary?.fields || [];
    const first = summary?.groups?.[0];
    const members = [...runsById.values()].filter((r) => r.role !== "baseline" && (!first || sameGroup(r.config, first, fields)));
    onePerD(members).slice(0, MAX_DEFAULT_OVERLAY).forEach((r) => selection.add(r.id));
    return selection.size > 0;
  }

  return {
    node,
    redraw,
    chooseDefault,
    update(data) { ({ runsById, summary } = data); },
    destroy() { purge(chart); },
  };
}
