// One run: live convergence through Server-Sent Events, zoom that re-reads the range at full
// resolution, its config, status, timings and errors, and the histograms of P and θ_d.

import { ApiError, api } from "./api.js";
import { config as plotConfig, layout, loadPlotly, pngButton, purge } from "./charts.js";
import {
  FINISHED, PALETTE, chip, clear, debounce, fmtDuration, fmtInt, fmtNum, fmtPct, fmtTime, fmtValue, h, rgba, setText, toast,
  updateChip,
} from "./dom.js";
import { phaseText } from "./phase.js";
import { runConfigSchema, sameValue } from "./schema.js";

const MAX_POINTS = 2000;           // per series and request: a zoomed range with fewer points comes back whole
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
class Convergence {
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
    if (ticket !== this.loads) return;
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

// ---- distributions ------------------------------------------------------------------------------

function histogramTraces(block, colors = { initial: "#98a2b3", trained: PALETTE[0] }) {
  const edges = block.edges || [];
  const centers = edges.slice(0, -1).map((e, i) => (e + edges[i + 1]) / 2);
  const widths = edges.slice(0, -1).map((e, i) => edges[i + 1] - e);
  const traces = [];
  for (const which of ["initial", "trained"]) {
    const part = block[which];
    if (!part || !part.counts) continue;
    traces.push({
      type: "bar", name: which, x: centers, y: part.counts, width: widths, legendgroup: which,
      marker: { color: rgba(colors[which], which === "initial" ? 0.5 : 0.55), line: { width: 0 } },
      hovertemplate: `${which}<br>%{x:.4g}<br>count %{y}<extra></extra>`,
    });
  }
  return traces;
}

function statsLine(block) {
  const i = block.initial || {}, t = block.trained;
  const pair = (key) => (t ? `${fmtNum(i[key], 3)} → ${fmtNum(t[key], 3)}` : fmtNum(i[key], 3));
  return `n ${fmtInt(i.n)} · mean ${pair("mean")} · std ${pair("std")} · |x| ${pair("abs_mean")}`;
}

const POWER_NAMES = { 2: "squared", 3: "cubed" };

/** A feature block's name as the engine writes it (linear, power_2, cos, rff_linear, …), explained. */
export function blockLabel(name) {
  const power = /^power_(\d+)$/.exec(name);
  if (power) return `${name} (${POWER_NAMES[power[1]] || `θ^${power[1]}`})`;
  return name;
}

export function histogramCell(title, block, filename) {
  const div = h("div.chart.small");
  const cell = h("div.hist-cell", { dataset: { block: title } },
    h("h3", title, h("span", block.trained ? "initial vs trained" : "initial")),
    div, h("div.stats-line", statsLine(block)));
  const draw = async () => {
    const Plotly = await loadPlotly();
    await Plotly.react(div, histogramTraces(block), layout({
      barmode: "overlay", bargap: 0, showlegend: true, margin: { l: 46, r: 8, t: 8, b: 30 },
      legend: { orientation: "h", x: 1, xanchor: "right", y: 1, yanchor: "top", bgcolor: "rgba(255,255,255,0.7)" },
      xaxis: { title: { text: "" } }, yaxis: { title: { text: "" } },
    }), plotConfig(filename));
  };
  return { cell, div, draw };
}

class Distributions {
  constructor(run) {
    this.run = run;
    this.body = h("div", h("p.muted", "Loading…"));
    this.node = h("div.panel", { dataset: { section: "distributions" } },
      h("div.panel-head", h("h2", "Distributions of P and θ_d")), this.body);
    this.cells = [];
  }

  async load(run = this.run) {
    this.run = run;
    let data;
    try {
      data = await api(`/api/runs/${run.id}/distributions`);
    } catch (err) {
      this.data = null;
      const message = err instanceof ApiError && err.status === 404
        ? (FINISHED.has(run.status) ? "This run recorded no distributions (direct training, or it stopped before its projection was built)."
          : "Recorded when the run finishes: P per feature block and θ_d, at initialisation and after training.")
        : `Could not read the distributions: ${err.message}`;
      this.body.replaceChildren(h("p.muted", message));
      return null;
    }
    this.data = data;
    this.cells.forEach((c) => purge(c.div));
    this.cells = [];
    const pBlocks = Object.entries(data.P || {});
    const thetaBlocks = Object.entries(data.theta_d || {});
    const sections = [];
    if (pBlocks.length) {
      const cells = pBlocks.map(([name, block]) => histogramCell(`P · ${blockLabel(name)}`, block, `run-${run.id}-P-${name}`));
      this.cells.push(...cells);
      sections.push(h("h3", "P, per feature block (entries of the columns that multiply each block of φ(θ_d))"), h("div.hist-grid", cells.map((c) => c.cell)));
    } else {
      sections.push(h("p.muted", "No histogram of P: this projection keeps no explicit matrix."));
    }
    if (thetaBlocks.length) {
      const cells = thetaBlocks.map(([name, block]) => histogramCell(name === "theta_d" ? "θ_d" : name, block, `run-${run.id}-theta_d`));
      this.cells.push(...cells);
      sections.push(h("h3", { style: { marginTop: "12px" } }, "θ_d, the trained intrinsic weights"), h("div.hist-grid", cells.map((c) => c.cell)));
    }
    const bBlocks = Object.entries(data.B || {});
    if (bBlocks.length) {
      const cells = bBlocks.map(([name, block]) => histogramCell(name === "B" ? "B" : `B · ${name}`, block, `run-${run.id}-B`));
      this.cells.push(...cells);
      sections.push(h("h3", { style: { marginTop: "12px" } }, "B, the random Fourier features' matrices (after training too with train_rff_b)"),
        h("div.hist-grid", cells.map((c) => c.cell)));
    }
    this.body.replaceChildren(...sections);
    await Promise.all(this.cells.map((c) => c.draw()));
    this.node.dataset.loaded = "true";
    return data;
  }

  destroy() { this.cells.forEach((c) => purge(c.div)); }
}

// ---- the page ---------------------------------------------------------------------------------

function card(label, valueNode) {
  return h("div.card", h("div.k", label), valueNode);
}

export async function renderRunPage(root, runId) {
  // Everything the page needs is requested at once: the run, its curves, the schema (and plotly.js).
  loadPlotly().catch(() => {});
  const firstMetrics = api(`/api/runs/${runId}/metrics`, { query: { max_points: MAX_POINTS } });
  firstMetrics.catch(() => {});
  const schemaPromise = runConfigSchema().catch(() => null);
  let run;
  try {
    run = await api(`/api/runs/${runId}`);
  } catch (err) {
    root.append(h("div.alert.error", { text: err.status === 404 ? `There is no run #${runId}.` : `Could not load run #${runId}: ${err.message}` }));
    return null;
  }
  const schema = await schemaPromise;
  let stream = null;
  let closed = false;

  // header
  const statusChip = chip(run.status);
  const liveTag = h("span.muted");
  const actions = h("div.actions");
  const archivedTag = h("span.tag.hidden", { title: "Hidden from the runs list" }, "archived");
  const head = h("div.page-head", h("h1", `Run #${run.id}`), statusChip, liveTag,
    run.experiment_id ? h("a", { href: `#/experiments/${run.experiment_id}` }, `experiment #${run.experiment_id}`) : null,
    run.role === "baseline" ? h("span.tag.role-baseline", "baseline") : null, archivedTag, actions);
  const errorBox = h("div.alert.error.hidden");
  const warningBox = h("div.alert.warn.hidden");
  const batchLine = h("div.batch-line.muted.hidden", { dataset: { section: "batch" } });

  // cards
  const v = {};
  const mk = (key, label, small = false) => { v[key] = h(`div.v${small ? ".small" : ""}`); return card(label, v[key]); };
  const cards = h("div.cards",
    mk("epoch", "Epoch"), mk("step", "Step"), mk("train_loss", "Train loss"), mk("train_acc", "Train acc"),
    mk("test_acc", "Test acc"), mk("best", "Best test acc"), mk("D", "D"), mk("k", "k"), mk("d", "d"),
    mk("ratio", "D / d"), mk("duration", "Duration"), mk("attempt", "Attempt"));

  const convergence = new Convergence(run.id, () => {});
  const distributions = new Distributions(run);
  const configTable = h("div.kv-grid", { dataset: { section: "config" } });
  const timings = h("div.kv-grid", { dataset: { section: "timings" } });

  const paint = (r) => {
    run = { ...run, ...r };
    updateChip(statusChip, run.status);
    setText(liveTag, FINISHED.has(run.status) ? "" : run.cancel_requested ? "cancel requested…" : run.status === "running" ? `live${phaseText(run.progress) ? ` · ${phaseText(run.progress)}` : ""}` : "waiting for a worker");
    const p = run.progress || {}, f = run.final_metrics || {};
    const pick = (key) => (typeof f[key] === "number" ? f[key] : p[key]);
    setText(v.epoch, p.epoch !== undefined || f.epochs !== undefined ? `${f.epochs ?? p.epoch} / ${run.config?.epochs ?? "?"}` : "–");
    setText(v.step, fmtNum(f.steps ?? p.step));
    setText(v.train_loss, fmtNum(pick("train_loss")));
    setText(v.train_acc, fmtPct(pick("train_acc")));
    setText(v.test_acc, fmtPct(pick("test_acc")));
    setText(v.best, fmtPct(f.best_test_acc));
    setText(v.D, fmtInt(run.D));
    setText(v.k, fmtInt(run.k));
    setText(v.d, fmtInt(run.d));
    setText(v.ratio, run.D && run.d ? `${fmtNum(run.D / run.d, 3)}×` : "–");
    setText(v.duration, fmtDuration(liveDuration()));
    setText(v.attempt, String(run.attempt ?? "–"));
    errorBox.classList.toggle("hidden", !run.error);
    setText(errorBox, run.error ? `Error: ${run.error}` : "");
    const warnings = run.warnings || [];
    warningBox.classList.toggle("hidden", !warnings.length);
    setText(warningBox, warnings.join("\n"));
    archivedTag.classList.toggle("hidden", !run.archived);
    paintActions();
    paintTimings();
    paintBatch();
  };

  // The runs this run trained with: one computation on one device (a worker's batch).
  let batchShown = null;
  const paintBatch = async () => {
    const batchId = run.batch_id || null;
    if (batchId === batchShown) return;
    batchShown = batchId;
    batchLine.classList.toggle("hidden", !batchId);
    if (!batchId) { clear(batchLine); return; }
    try {
      const fields = ["d", "seed", "projection"].map((f) => `config_fields=${f}`).join("&");
      const page = await api(`/api/runs?batch_id=${batchId}&sort=id&limit=256&archived=all&${fields}`);
      if (batchShown !== batchId) return;
      const mates = page.items.filter((r) => r.id !== run.id);
      batchLine.replaceChildren(
        h("span", `Trained in one batch of ${page.total} runs (batch ${batchId.slice(0, 8)}) with `),
        ...mates.flatMap((r, i) => [i ? ", " : "", h("a", { href: `#/runs/${r.id}`, dataset: { run: String(r.id) },
          title: `${r.config.projection}, d = ${r.config.d}, seed ${r.config.seed} · ${r.status}` },
          `#${r.id}`), h("span.faint", ` (d=${r.config.d}, seed ${r.config.seed})`)]));
    } catch (err) {
      setText(batchLine, `Trained in batch ${batchId.slice(0, 8)} (its runs could not be listed: ${err.message})`);
    }
  };

  // The event stream carries no duration: count it here while the run is running.
  const liveDuration = () => {
    if (run.status === "running" && run.started_at) return Math.max(0, (Date.now() - Date.parse(run.started_at)) / 1000);
    return run.duration_seconds;
  };
  const ticker = setInterval(() => { if (run.status === "running") setText(v.duration, fmtDuration(liveDuration())); }, 1000);

  const paintActions = () => {
    clear(actions);
    if (!FINISHED.has(run.status) && !run.cancel_requested) {
      actions.append(h("button.danger", { dataset: { action: "cancel" }, onclick: () => act("cancel") }, "Cancel run"));
    }
    if (["failed", "cancelled", "diverged"].includes(run.status)) {
      actions.append(h("button", { dataset: { action: "retry" }, onclick: () => act("retry") }, "Retry"));
    }
    if (run.config?.train_p && run.status === "succeeded") {
      const hasTrained = Object.values(distributions.data?.P || {}).some((b) => b.trained);
      actions.append(h("button.primary", {
        dataset: { action: "follow-up" }, disabled: !hasTrained,
        title: hasTrained ? `Queue the same run with p_init = from_run:${run.id}: each block of P drawn with the statistics of this run's trained P (and P itself fixed)`
          : "Available once this run's trained P has been recorded",
        onclick: followUp,
      }, "Queue follow-up: P from trained distribution"));
    }
    actions.append(h("a.btn", { href: `#/new?clone_run=${run.id}`, title: "Open the experiment form with this run's config" }, "Clone into form"));
    actions.append(h("button", {
      dataset: { action: "archive" }, onclick: toggleArchived,
      title: run.archived ? "Show this run in the runs list again" : "Hide this run from the runs list (nothing is deleted)",
    }, run.archived ? "Unarchive" : "Archive"));
    // A run is deleted once finished: its worker no longer writes to it (the API refuses otherwise).
    const deletable = FINISHED.has(run.status);
    actions.append(h("button.danger", {
      dataset: { action: "delete" }, onclick: deleteRun, disabled: !deletable,
      title: deletable ? "Delete this run with its curves and distributions"
        : run.cancel_requested ? "Deletable once it has stopped" : "Cancel it first: a queued or running run cannot be deleted",
    }, "Delete"));
  };

  const toggleArchived = async () => {
    try {
      paint(await api(`/api/runs/${run.id}`, { method: "PATCH", body: { archived: !run.archived } }));
      toast(run.archived ? "Archived: hidden from the runs list" : "Unarchived");
    } catch (err) {
      toast(err.message, "error", 6000);
    }
  };

  const deleteRun = async () => {
    if (!confirm(`Delete run #${run.id} with its curves and distributions? This cannot be undone.`)) return;
    try {
      await api(`/api/runs/${run.id}`, { method: "DELETE" });
    } catch (err) {
      toast(err.message, "error", 8000);
      return;
    }
    toast(`Run #${run.id} deleted`);
    location.hash = run.experiment_id ? `#/experiments/${run.experiment_id}` : "#/runs";
  };

  const paintTimings = () => {
    const rows = [
      ["created", fmtTime(run.created_at)], ["queued", fmtTime(run.queued_at)], ["started", fmtTime(run.started_at)],
      ["finished", fmtTime(run.finished_at)], ["last heartbeat", fmtTime(run.heartbeat_at)],
      ["duration", fmtDuration(liveDuration())], ["worker", run.worker || "–"], ["attempt", String(run.attempt ?? "–")],
      ["cancel requested", run.cancel_requested ? "yes" : "no"],
    ];
    const f = run.final_metrics || {};
    for (const [key, value] of Object.entries(f)) rows.push([`final ${key}`, typeof value === "number" ? fmtNum(value, 5) : fmtValue(value)]);
    configTableRows(timings, rows.map(([k, val]) => [k, val, false]));
  };

  const paintConfig = () => {
    const config = run.config || {};
    const rows = [];
    const known = new Set();
    for (const field of schema?.fields || []) {
      known.add(field.name);
      if (!(field.name in config)) continue;
      rows.push([field.name, fmtValue(config[field.name]), !sameValue(config[field.name], field.default), field.description]);
    }
    for (const [key, value] of Object.entries(config)) if (!known.has(key)) rows.push([key, fmtValue(value), false]);
    configTableRows(configTable, rows);
  };

  const act = async (action) => {
    try {
      const updated = await api(`/api/runs/${run.id}/${action}`, { method: "POST" });
      paint(updated);
      toast(action === "cancel" ? "Cancel requested" : "Queued again");
      if (action === "retry") openStream();
    } catch (err) {
      toast(err.message, "error", 6000);
    }
  };

  const followUp = async () => {
    const config = { ...run.config, p_init: `from_run:${run.id}`, train_p: false };
    try {
      const created = await api("/api/runs", { method: "POST", body: config });
      toast(`Queued run #${created.id} with P drawn from run #${run.id}'s trained P`);
      location.hash = `#/runs/${created.id}`;
    } catch (err) {
      toast(err.message, "error", 8000);
    }
  };

  const refreshRun = async () => {
    try { paint(await api(`/api/runs/${run.id}`)); } catch { /* keep what is shown */ }
  };

  const openStream = () => {
    if (stream) stream.close();
    const es = new EventSource(`/api/runs/${run.id}/events?last_event_id=${convergence.version}`);
    stream = es;
    es.addEventListener("points", (e) => convergence.push(JSON.parse(e.data)));
    es.addEventListener("status", async (e) => {
      const status = JSON.parse(e.data);
      const was = run.status;
      paint(status);
      if (status.status !== was && FINISHED.has(status.status)) {
        await refreshRun();
        await distributions.load(run);
        paintActions();
      }
    });
    es.addEventListener("end", async () => {
      es.close();
      if (stream === es) stream = null;
      setText(liveTag, "");
      await refreshRun();
      if (!distributions.data) { await distributions.load(run); paintActions(); }
    });
    es.onerror = () => { if (!closed && es.readyState === EventSource.CLOSED) setText(liveTag, "stream closed"); };
  };

  root.append(head, batchLine, errorBox, warningBox, cards, convergence.node,
    h("div.grid2",
      h("div.panel", h("div.panel-head", h("h2", "Config"), h("span.faint", "bold: differs from the default")), configTable),
      h("div.panel", h("div.panel-head", h("h2", "Status, timings and final metrics")), timings)),
    distributions.node);
  paint(run);
  paintConfig();
  await convergence.load(null, firstMetrics);
  if (closed) return null;
  openStream();
  distributions.load(run).then(() => paintActions());

  return () => {
    closed = true;
    clearInterval(ticker);
    if (stream) stream.close();
    convergence.destroy();
    distributions.destroy();
  };
}

function configTableRows(box, rows) {
  box.replaceChildren(...rows.map(([key, value, changed, help]) =>
    h("div", { dataset: { key } }, h("span.k", { title: help || "" }, key), h(`span.v${changed ? ".changed" : ""}`, value))));
}

