// A run's convergence: loss and accuracy against step, read from /metrics (downsampled server-side),
// extended live by the points of the run's event stream, and re-read at full resolution for a zoomed
// range. Both charts keep the same x range.

import { api } from "../api.js";
import { config as plotConfig, layout, loadPlotly, pngButton, purge } from "../charts.js";
import { PALETTE, debounce, fmtInt, h, setText } from "../dom.js";

export const MAX_POINTS = 2000;           // per series and request: a zoomed range with fewer points comes back whole
const RELOAD_AFTER = 4 * MAX_POINTS; // live points appended beyond this: re-read the series downsampled

const CHARTS = [
  { id: "loss", title: "Loss", keys: ["train_loss", "test_loss"], ytitle: "cross-entropy loss" },
  { id: "acc", title: "Accuracy", keys: ["train_acc", "test_acc"], ytitle: "accuracy", yrange: null },
];
const SERIES_STYLE = {
  train_loss: { name: "train (per log step)", color: PALETTE[0], mode: "lines", width: 1.3 },
  test_loss: { name: "test (per epoch)", color: PALETTE[1], mode: "lines+markers", width: 2 },
  train_acc: { name: "train (per log step)", color: PALETTE[0], mode: "lines", width: 1.3 },
  test_acc: { name: "test (per epoch)", color: PALETTE[1], mode: "lines+markers", width: 2 },
};

/** The two convergence charts, fed by /metrics and extended by the run's event stream. */
export class ConvergencePanel {
  constructor(runId, onPoints) {
    this.runId = runId;
    this.onPoints = onPoints;
    this.range = null;                 // [x0, x1] while zoomed: set by the zoom itself, drawn by every read
    this.loads = 0;                    // reads started: only the latest one is drawn
    this.version = 0;                  // last point id included in the fetched series
    this.lastStep = {};                // key → largest step drawn
    this.lengths = {};                 // key → points in its trace
    this.pending = [];                 // SSE points waiting for the next animation frame
    this.syncing = false;
    this.charts = CHARTS.map((spec) => ({ spec, div: h("div.chart", { dataset: { chart: spec.id } }) }));
    this.reloadSoon = debounce(() => this.load(this.range), 800);
    this.fetchRange = debounce((range) => this.load(range), 150);
    this.status = h("span.muted");
    this.node = h("div.panel",
      h("div.panel-head", h("h2", "Convergence"), this.status,
        h("div.actions", h("span.faint", "drag to zoom (re-read at full resolution) · double-click to reset"),
          ...this.charts.map((c) => pngButton(() => c.div, `run-${runId}-${c.spec.id}`)))),
      h("div.grid2", this.charts.map((c) => c.div)));
  }

  traces(series) {
    const traces = [];
    for (const chart of this.charts) {
      chart.keys = chart.spec.keys;
      chart.traces = chart.spec.keys.map((key) => {
        const s = series[key] || { steps: [], values: [], epochs: [] };
        const style = SERIES_STYLE[key];
        return {
          type: "scatter", mode: style.mode, name: style.name, x: s.steps, y: s.values, customdata: s.epochs,
          line: { color: style.color, width: style.width }, marker: { size: 5, color: style.color },
          hovertemplate: `${key}<br>step %{x}<br>epoch %{customdata}<br>%{y:.4f}<extra></extra>`,
        };
      });
      traces.push(chart.traces);
    }
    return traces;
  }

  chartLayout(chart) {
    const xaxis = { title: { text: "step" } };
    if (this.range) Object.assign(xaxis, { range: this.range, autorange: false });
    else xaxis.autorange = true;
    const yaxis = { title: { text: chart.spec.ytitle } };
    if (this.range === null) yaxis.autorange = true;
    return layout({ title: { text: chart.spec.title, x: 0.01, font: { size: 13 } }, xaxis, yaxis, margin: { l: 56, r: 12, t: 46, b: 40 } });
  }

  /** Read the series (the whole run, or the zoomed range) and draw them; `prefetched`: the first read, already sent. */
  async load(range = null, prefetched = null) {
    const query = { max_points: MAX_POINTS };
    if (range) { query.x_min = Math.floor(range[0]); query.x_max = Math.ceil(range[1]); }
    const ticket = ++this.loads;
    let data, Plotly;
    try {
      // plotly.js loads (and parses) while the series are on their way.
      [Plotly, data] = await Promise.all([loadPlotly(), prefetched || api(`/api/runs/${this.runId}/metrics`, { query })]);
    } catch (err) {
      if (ticket === this.loads) setText(this.status, `could not read the curves: ${err.message}`);
      return;
    }
    // A read started later (a zoom while a live reload was on its way, or the reverse) wins,
    // whichever answer arrives last: the charts never fall back to an older range.
    if (ticket !== this.loads || !this.node.isConnected) return;
    const series = data.series || {};
    if (!range) {
      for (const [key, s] of Object.entries(series)) this.lastStep[key] = s.steps.length ? s.steps[s.steps.length - 1] : -1;
    } else {
      for (const [key, s] of Object.entries(series)) if (s.steps.length) this.lastStep[key] = Math.max(this.lastStep[key] ?? -1, s.steps[s.steps.length - 1]);
    }
    this.version = Math.max(this.version, data.last_event_id || 0);
    const traces = this.traces(series);
    const total = Object.values(series).reduce((n, s) => n + (s.total || 0), 0);
    const shown = Object.values(series).reduce((n, s) => n + s.steps.length, 0);
    setText(this.status, total ? `${fmtInt(shown)} of ${fmtInt(total)} points shown${range ? " in the zoomed range" : ""}` : "no points yet");
    for (const [i, chart] of this.charts.entries()) {
      await Plotly.react(chart.div, traces[i], this.chartLayout(chart), plotConfig(`run-${this.runId}-${chart.spec.id}`));
      chart.traces.forEach((t, j) => { this.lengths[chart.keys[j]] = t.x.length; });
      if (!chart.listening) {
        chart.listening = true;
        chart.div.on("plotly_relayout", (event) => this.onRelayout(chart, event));
      }
    }
    this.node.dataset.loaded = "true";
  }

  onRelayout(source, event) {
    if (this.syncing) return;
    let range;
    if ("xaxis.range[0]" in event) range = [event["xaxis.range[0]"], event["xaxis.range[1]"]];
    else if (Array.isArray(event["xaxis.range"])) range = event["xaxis.range"];
    else if (event["xaxis.autorange"]) range = null;
    else return;
    // Keep both charts on the same x range, then re-read that range from the server (a live
    // reload meanwhile reads it too: the range is the user's from now on).
    this.range = range;
    this.syncing = true;
    const others = this.charts.filter((c) => c !== source && c.div.data);
    Promise.all(others.map((c) => window.Plotly.relayout(c.div, range ? { "xaxis.range": range, "xaxis.autorange": false } : { "xaxis.autorange": true, "yaxis.autorange": true })))
      .finally(() => { this.syncing = false; });
    this.fetchRange(range);
  }

  /** Points from the event stream: extend the traces (batched per animation frame). */
  push(points) {
    this.pending.push(...points);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = null;
    const points = this.pending;
    this.pending = [];
    if (!points.length || !window.Plotly || !this.charts[0].div.data) return;
    const byKey = {};
    let rewritten = false;
    for (const p of points) {
      if (p.id <= this.version) continue;           // already in the fetched series
      if (p.step <= (this.lastStep[p.key] ?? -1)) { rewritten = true; continue; }   // a retried run overwrites: re-read
      this.lastStep[p.key] = p.step;
      const s = (byKey[p.key] ||= { x: [], y: [], customdata: [] });
      s.x.push(p.step); s.y.push(p.value); s.customdata.push(p.epoch);
    }
    for (const chart of this.charts) {
      const indices = [], update = { x: [], y: [], customdata: [] };
      chart.keys.forEach((key, i) => {
        if (!byKey[key]) return;
        indices.push(i);
        update.x.push(byKey[key].x); update.y.push(byKey[key].y); update.customdata.push(byKey[key].customdata);
        this.lengths[key] = (this.lengths[key] || 0) + byKey[key].x.length;
      });
      if (indices.length) window.Plotly.extendTraces(chart.div, update, indices);
    }
    const added = Object.values(byKey).reduce((n, s) => n + s.x.length, 0);
    if (added) this.onPoints?.(added);
    if (rewritten || Object.values(this.lengths).some((n) => n > RELOAD_AFTER)) this.reloadSoon();
  }

  destroy() {
    this.reloadSoon.cancel();
    this.fetchRange.cancel();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.charts.forEach((c) => purge(c.div));
  }
}
