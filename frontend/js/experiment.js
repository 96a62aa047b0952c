// One experiment: test accuracy against d per group (mean ± std over seeds, baseline, 90% threshold,
// d_int90 with its interval), the d_int90 table, a contrast of two groups (Δ per d with its interval
// and tests), overlaid convergence of chosen runs, the P
// distributions across d, exports, and its runs. Everything grows as runs finish. A search
// experiment also shows, per group, its rounds (the d evaluated, their mean accuracy) and the
// bracket (lo, hi] that holds d_int90, narrowing as rounds finish.
//
// The page composes panels (frontend/js/panels/) and keeps them live: the experiment's event stream
// says when a run starts, progresses or ends (polling the experiment when the stream cannot be had).

import { api } from "./api.js";
import { loadPlotly } from "./charts.js";
import { h } from "./dom.js";
import { live } from "./live.js";
import { accuracyPanel } from "./panels/accuracy-vs-d.js";
import { compareSelectionBar } from "./panels/compare-selection.js";
import { contrastPanel } from "./panels/contrast.js";
import { convergenceOverlayPanel } from "./panels/convergence-overlay.js";
import { dint90TablePanel } from "./panels/dint90-table.js";
import { experimentHead } from "./panels/experiment-head.js";
import { pDistributionsPanel } from "./panels/p-distributions.js";
import { RunTable } from "./panels/runs-table.js";
import { searchRoundsPanel } from "./panels/search-rounds.js";
import { tagsNotesPanel } from "./panels/tags-notes.js";
import { isFinished } from "./statuses.js";

const POLL_MS = 3000;           // only when the event stream cannot be had
const LIVE_STATUS_MS = 300;     // a run started or ended: redraw soon, batching its neighbours
const LIVE_PROGRESS_MS = 2000;  // an overlaid run progressed: its curves, at most this often

/**
 * Batched redraws: "all" (a run started or ended: re-read everything) soon, "overlay" (an overlaid
 * run progressed) at most every LIVE_PROGRESS_MS; an "all" asked meanwhile wins over an "overlay".
 */
function redrawScheduler(redraw) {
  let pending = null, scheduled = false;
  const schedule = (what) => {
    if (pending !== "all") pending = what;
    if (scheduled) return;
    scheduled = true;
    setTimeout(async () => {
      const doing = pending;
      pending = null;
      try { await redraw(doing); } catch (err) { console.warn("redraw failed", err); } finally {
        scheduled = false;
        if (pending) schedule(pending);
      }
    }, pending === "all" ? LIVE_STATUS_MS : LIVE_PROGRESS_MS);
  };
  return schedule;
}

/** Every run of the experiment, with the config fields that group and label them (capped by max_experiment_runs). */
async function experimentRuns(experiment) {
  const configFields = [...new Set([...Object.keys(experiment.grid || {}), "d", "seed"])];
  const items = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await api("/api/runs", {
      query: { experiment_id: experiment.id, limit: 1000, offset, sort: "id", config_fields: configFields },
    });
    items.push(...page.items);
    if (items.length >= page.total || !page.items.length) break;
  }
  return new Map(items.map((r) => [r.id, r]));
}

class ExperimentView {
  constructor(root, experiment) {
    this.experiment = experiment;
    this.closed = false;
    this.summary = null;
    this.runsById = new Map();           // member and baseline runs with their configs (for grouping)
    this.drawnStatus = new Map();        // run id → the status the charts were last drawn with
    this.countsKey = null;               // the counts the charts were last drawn with
    this.userSelected = false;
    const selection = new Set();
    const id = experiment.id;
    this.head = experimentHead(experiment, { onCancelled: () => this.refresh(true) });
    this.tagsNotes = tagsNotesPanel(experiment, { kind: "experiments" });
    this.accuracy = accuracyPanel(id);
    this.search = experiment.kind === "search" ? searchRoundsPanel(id) : null;
    this.dint90 = dint90TablePanel();
    this.contrast = contrastPanel(experiment);
    this.overlay = convergenceOverlayPanel({ experimentId: id, selection });
    this.distributions = pDistributionsPanel(id);
    this.table = new RunTable({
      // Every run of the experiment, archived or not (nor hidden when the experiment itself is archived).
      filters: { experiment_id: id, archived: "all" }, showFilters: false, showExperiment: false, selectable: true, limit: 100,
      selectTitle: "Tick to overlay this run's curves, or to compare it",
      selection, onSelection: () => { this.userSelected = true; this.compareBar.paint(); this.overlay.redraw(); },
    });
    this.compareBar = compareSelectionBar(this.table);
    this.schedule = redrawScheduler((what) => (this.closed ? null : what === "all" ? this.refresh(true) : this.overlay.redraw()));
    root.append(...this.head.nodes, this.tagsNotes.node, this.accuracy.node, ...(this.search ? [this.search.node] : []), this.dint90.node,
      this.contrast.node,
      h("div.grid2", this.overlay.node, this.distributions.node), h("div.panel", h("div.panel-head", h("h2", "Runs"), this.compareBar.node), this.table.node));
  }

  /** The summary, drawn in every panel that shows it (the last one read is kept when it cannot be read). */
  async drawSummary() {
    try {
      this.summary = await api(`/api/experiments/${this.experiment.id}/summary`);
    } catch (err) {
      this.accuracy.showError(`summary unavailable: ${err.message}`);
      return;
    }
    if (this.closed) return;
    this.dint90.update(this.summary);
    await Promise.all([this.accuracy.update(this.summary), this.contrast.update(), this.search?.update({ summary: this.summary, runsById: this.runsById })]);
  }

  /** Re-read the experiment; everything when a run's status changed (or `force`), else the overlay of running runs. */
  async refresh(force = false) {
    try {
      this.experiment = await api(`/api/experiments/${this.experiment.id}`);
    } catch { return; }
    if (this.closed) return;
    for (const run of this.experiment.runs || []) this.drawnStatus.set(run.id, run.status);
    this.head.update(this.experiment);
    this.tagsNotes.update(this.experiment);
    const key = JSON.stringify(this.experiment.counts || {});
    const running = (this.experiment.runs || []).some((r) => r.status === "running");
    if (force || key !== this.countsKey) {
      this.countsKey = key;
      this.runsById = await experimentRuns(this.experiment);
      await this.drawSummary();
      const data = { summary: this.summary, runsById: this.runsById };
      this.overlay.update(data);
      if (!this.userSelected && this.overlay.chooseDefault()) { this.table.paintSelection(); this.compareBar.paint(); }
      await Promise.all([this.overlay.redraw(), this.distributions.update(data)]);
    } else if (running && this.table.selection.size) {
      this.runsById = await experimentRuns(this.experiment);
      this.overlay.update({ summary: this.summary, runsById: this.runsById });
      await this.overlay.redraw();
    }
  }

  /** Nothing more will change: every run finished and no group still searching (the stream's own end). */
  settled() {
    const searching = (this.summary?.groups || []).some((g) => g.search?.status === "searching");
    return !searching && [...this.drawnStatus.values()].every(isFinished);
  }

  // A status event: a changed status redraws everything; progress of an overlaid run only the overlay
  // (the event carries the progress, so no run is re-read for it).
  onStatus(changed) {
    if (changed.some((run) => this.drawnStatus.get(run.id) !== run.status)) this.schedule("all");
    else if (changed.some((run) => run.status === "running" && this.table.selection.has(run.id))) {
      for (const run of changed) if (this.runsById.has(run.id)) Object.assign(this.runsById.get(run.id), run);
      this.schedule("overlay");
    }
  }

  async start() {
    await Promise.all([this.table.start(), this.refresh(true)]);
    if (this.closed) return;
    // Opened once the page is drawn: its first event (every run's status) redraws only what changed since.
    this.live = live({
      stream: () => `/api/experiments/${this.experiment.id}/events`,
      events: {
        status: (changed) => this.onStatus(changed),
        end: () => { if (![...this.drawnStatus.values()].every(isFinished)) this.schedule("all"); },   // drawn while going
      },
      poll: async () => { await this.refresh(false); return this.settled(); },
      pollMs: POLL_MS,
    });
  }

  destroy() {
    this.closed = true;
    this.live?.close();
    this.table.stop();
    for (const panel of [this.accuracy, this.search, this.dint90, this.contrast, this.overlay, this.distributions]) panel?.destroy();
  }
}

export async function renderExperimentPage(root, experimentId) {
  loadPlotly().catch(() => {});   // parsed while the experiment is on its way
  let experiment;
  try {
    experiment = await api(`/api/experiments/${experimentId}`);
  } catch (err) {
    root.append(h("div.alert.error", { text: err.status === 404 ? `There is no experiment #${experimentId}.` : `Could not load experiment #${experimentId}: ${err.message}` }));
    return null;
  }
  const view = new ExperimentView(root, experiment);
  await view.start();
  return () => view.destroy();
}
