// One run: live convergence through Server-Sent Events, zoom that re-reads the range at full
// resolution, its config, status, timings and errors, and the histograms of P and θ_d. The page
// composes panels (frontend/js/panels/) and keeps them live with the run's event stream (polling the
// run and its curves when the stream cannot be had).

import { api } from "./api.js";
import { loadPlotly } from "./charts.js";
import { h } from "./dom.js";
import { live } from "./live.js";
import { batchLine } from "./panels/batch-line.js";
import { runAlerts } from "./panels/run-alerts.js";
import { runCards } from "./panels/run-cards.js";
import { ConvergencePanel, MAX_POINTS } from "./panels/run-convergence.js";
import { RunDistributionsPanel } from "./panels/run-distributions.js";
import { runHead } from "./panels/run-head.js";
import { configPanel, timingsPanel } from "./panels/run-tables.js";
import { tagsNotesPanel } from "./panels/tags-notes.js";
import { runConfigSchema } from "./schema.js";
import { isFinished } from "./statuses.js";

const POLL_MS = 5000;    // only when the event stream cannot be had: the run and its curves, re-read

class RunView {
  constructor(root, run, schema) {
    this.run = run;
    this.closed = false;
    this.head = runHead(run, {
      onRun: (updated) => this.paint(updated),
      onRetried: () => this.live?.restart(),
      hasTrainedP: () => Object.values(this.distributions.data?.P || {}).some((b) => b.trained),
      pollSeconds: POLL_MS / 1000,
    });
    this.tagsNotes = tagsNotesPanel(run, { kind: "runs", onChange: (updated) => this.paint(updated) });
    this.batch = batchLine();
    this.alerts = runAlerts();
    this.cards = runCards();
    this.convergence = new ConvergencePanel(run.id, () => {});
    this.config = configPanel(schema);
    this.timings = timingsPanel();
    this.distributions = new RunDistributionsPanel();
    root.append(this.head.node, this.batch.node, ...this.alerts.nodes, this.tagsNotes.node, this.cards.node, this.convergence.node,
      h("div.grid2", this.config.node, this.timings.node), this.distributions.node);
  }

  /** Show the run with what changed (a status event carries part of it). */
  paint(changes) {
    this.run = { ...this.run, ...changes };
    for (const panel of [this.cards, this.alerts, this.timings, this.batch, this.tagsNotes]) panel.update(this.run);
    this.head.update(this.run, this.live?.state);
  }

  async reread() {
    try { this.paint(await api(`/api/runs/${this.run.id}`)); } catch { /* keep what is shown */ }
  }

  /** Finished: its final state, and the distributions it recorded (the follow-up needs them). */
  async finished() {
    await this.reread();
    await this.distributions.load(this.run);
    this.paint({});
  }

  onStatus(status) {
    const was = this.run.status;
    this.paint(status);
    if (status.status !== was && isFinished(status.status)) this.finished();
  }

  /** Without the stream: the run and its curves (the range shown), until it has finished. */
  async poll() {
    const was = this.run.status;
    await this.reread();
    await this.convergence.load(this.convergence.range);
    if (isFinished(this.run.status) && (was !== this.run.status || !this.distributions.data)) await this.finished();
    return isFinished(this.run.status);
  }

  async start(firstMetrics) {
    this.paint(this.run);
    this.config.update(this.run);
    await this.convergence.load(null, firstMetrics);
    if (this.closed) return;
    this.live = live({
      // Resumes after the last point the charts hold.
      stream: () => `/api/runs/${this.run.id}/events?last_event_id=${this.convergence.version}`,
      events: {
        points: (points) => this.convergence.push(points),
        status: (status) => this.onStatus(status),
        end: async () => {
          await this.reread();
          if (!this.distributions.data) { await this.distributions.load(this.run); this.paint({}); }
        },
      },
      poll: () => this.poll(),
      pollMs: POLL_MS,
      onState: (state) => this.head.update(this.run, state),
    });
    this.distributions.load(this.run).then(() => this.paint({}));
  }

  destroy() {
    this.closed = true;
    this.live?.close();
    this.cards.destroy();
    this.convergence.destroy();
    this.distributions.destroy();
  }
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
  const view = new RunView(root, run, await schemaPromise);
  await view.start(firstMetrics);
  return () => view.destroy();
}
