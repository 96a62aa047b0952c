// Runs compared, from any experiments: #/compare?runs=12,15,40. Their curves overlaid, their configs side
// by side with the differing fields highlighted, their final metrics with the best marked, and their P
// distributions on one x range. A run that does not exist is named in a note; a queued or running one
// carries its status and the page re-reads it until every run has finished.

import { api, experimentName } from "./api.js";
import { loadPlotly } from "./charts.js";
import { h, poller } from "./dom.js";
import { compareConfigPanel } from "./panels/compare-config.js";
import { compareCurvesPanel } from "./panels/compare-curves.js";
import { compareDistributionsPanel } from "./panels/compare-distributions.js";
import { compareMetricsPanel } from "./panels/compare-metrics.js";
import { MAX_COMPARE, comparison, parseRunIds } from "./panels/compare-runs.js";
import { labSchema, runConfigSchema } from "./schema.js";
import { isFinished } from "./statuses.js";

const POLL_MS = 3000;     // while a compared run is queued or running

/** Each id's run, or the reason it cannot be shown: [{ id, run } | { id, missing: true } | { id, error }]. */
async function readRuns(ids) {
  return Promise.all(ids.map((id) => api(`/api/runs/${id}`).then((run) => ({ id, run }), (err) =>
    (err.status === 404 ? { id, missing: true } : { id, error: err.message }))));
}

function notes(requested, ids, answers) {
  const missing = answers.filter((a) => a.missing).map((a) => `#${a.id}`);
  const failed = answers.filter((a) => a.error);
  return [
    requested.length > ids.length
      ? h("div.alert.warn", { dataset: { note: "capped" } }, `Showing the first ${MAX_COMPARE} of the ${requested.length} runs asked for: compare takes at most ${MAX_COMPARE}.`) : null,
    missing.length
      ? h("div.alert.warn", { dataset: { note: "missing" } }, `${missing.length === 1 ? "Run" : "Runs"} ${missing.join(", ")} ${missing.length === 1 ? "does" : "do"} not exist (deleted, or never created).`) : null,
    ...failed.map((a) => h("div.alert.error", { dataset: { note: "error" } }, `Run #${a.id} could not be read: ${a.error}`)),
  ];
}

class CompareView {
  constructor(root, requested, ids) {
    this.requested = requested;
    this.ids = ids;
    this.notes = h("div");
    this.empty = h("div.alert.info.hidden", { dataset: { note: "empty" } }, "None of these runs can be shown. ", h("a", { href: "#/runs" }, "Choose runs in the runs table"), ".");
    this.curves = compareCurvesPanel();
    this.config = compareConfigPanel();
    this.metrics = compareMetricsPanel();
    this.distributions = compareDistributionsPanel();
    this.panels = h("div", this.curves.node, this.metrics.node, this.config.node, this.distributions.node);
    root.append(this.notes, this.empty, this.panels);
  }

  async load() {
    const [answers, fieldOrder, lab] = await Promise.all([readRuns(this.ids),
      runConfigSchema().then((s) => s.fields.map((f) => f.name)).catch(() => []), labSchema().catch(() => ({}))]);
    if (this.closed) return false;
    const runs = answers.filter((a) => a.run).map((a) => a.run);
    const names = new Map(await Promise.all([...new Set(runs.map((r) => r.experiment_id).filter(Boolean))]
      .map(async (id) => [id, await experimentName(id)])));
    if (this.closed) return false;
    this.notes.replaceChildren(...notes(this.requested, this.ids, answers).filter(Boolean));
    this.empty.classList.toggle("hidden", runs.length > 0);
    this.panels.classList.toggle("hidden", runs.length === 0);
    const view = comparison(runs, fieldOrder, names);
    this.config.update(view, fieldOrder);
    this.metrics.update(view, lab.final_metrics || []);
    await Promise.all([this.curves.update(view, lab.series || []), this.distributions.update(view)]);
    return runs.every((run) => isFinished(run.status));
  }

  async start() {
    const settled = await this.load();
    if (settled || this.closed) return;
    this.poll = poller(async () => { if (await this.load()) this.poll.stop(); }, POLL_MS);
  }

  destroy() {
    this.closed = true;
    this.poll?.stop();
    this.curves.destroy();
    this.distributions.destroy();
  }
}

export async function renderComparePage(root, query) {
  loadPlotly().catch(() => {});   // parsed while the runs are on their way
  const requested = parseRunIds(query);
  const ids = requested.slice(0, MAX_COMPARE);
  root.append(h("div.page-head", h("h1", "Compare runs"),
    h("span.muted", ids.length ? ids.map((id) => `#${id}`).join(", ") : ""),
    h("div.actions", h("a.btn", { href: "#/runs" }, "Choose runs"))));
  if (!ids.length) {
    root.append(h("div.alert.info", { dataset: { note: "empty" } }, "No runs to compare: tick 2 or more runs in the ",
      h("a", { href: "#/runs" }, "runs table"), " and press Compare."));
    return null;
  }
  const view = new CompareView(root, requested, ids);
  await view.start();
  return () => view.destroy();
}
