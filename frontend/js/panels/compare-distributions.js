// The compared runs' P distributions side by side: one block (a feature block of P, or θ_d) at a time,
// one histogram per run (initial vs trained, drawn as on the run page), all on one x range so they compare.

import { ApiError, api } from "../api.js";
import { purge } from "../charts.js";
import { h, setText } from "../dom.js";
import { isFinished } from "../statuses.js";
import { blockLabel, histogramCell } from "./histograms.js";

const KINDS = { P: "P", theta_d: "θ_d" };

function blockNames(loaded) {
  return [...new Set(loaded.flatMap(({ data }) => Object.keys(KINDS).flatMap((kind) =>
    Object.keys(data?.[kind] || {}).map((name) => `${kind}:${name}`))))];
}

function blockTitle(option) {
  const [kind, name] = option.split(":");
  return kind === "P" ? `P · ${blockLabel(name)}` : KINDS[kind];
}

/** The smallest first edge and the largest last edge of the block over the runs that recorded it. */
function sharedRange(blocks) {
  const edges = blocks.map((block) => block.edges || []).filter((e) => e.length > 1);
  if (!edges.length) return null;
  return [Math.min(...edges.map((e) => e[0])), Math.max(...edges.map((e) => e[e.length - 1]))];
}

/** Why a run shows no histogram of the block. */
function missingText(run, entry) {
  if (!isFinished(run.status)) return `${run.status}: recorded when the run finishes`;
  if (entry?.error) return entry.error;
  return entry?.data ? "this run recorded no such block" : "this run recorded no distributions (direct training, or it stopped before its projection was built)";
}

/** The panel: { node, update(view), destroy() }. */
export function compareDistributionsPanel() {
  const blockSelect = h("select", { dataset: { control: "block" }, title: "The block of P (or θ_d) to compare", onchange: () => draw() });
  const note = h("span.muted");
  const grid = h("div.hist-grid");
  const node = h("div.panel", { dataset: { section: "compare-distributions" } },
    h("div.panel-head", h("h2", "P distributions"), note, h("div.actions", blockSelect)), grid);
  const cache = new Map();           // run id → { data } | { error }, for finished runs (they never change)
  let view = null, cells = [], drawnKey = null;

  async function load(run) {
    if (!isFinished(run.status)) return { data: null };
    if (!cache.has(run.id)) {
      cache.set(run.id, api(`/api/runs/${run.id}/distributions`).then((data) => ({ data })).catch((err) =>
        ({ data: null, error: err instanceof ApiError && err.status === 404 ? null : `could not read its distributions: ${err.message}` })));
    }
    return cache.get(run.id);
  }

  function paintOptions(names) {
    const current = blockSelect.value;
    if ([...blockSelect.options].map((o) => o.value).join() !== names.join()) {
      blockSelect.replaceChildren(...names.map((name) => h("option", { value: name }, blockTitle(name))));
    }
    blockSelect.value = names.includes(current) ? current : names[0] || "";
    blockSelect.classList.toggle("hidden", names.length < 2);
  }

  async function draw() {
    const loaded = await Promise.all((view?.runs || []).map(async (run) => ({ run, ...(await load(run)) })));
    paintOptions(blockNames(loaded));
    const [kind, name] = blockSelect.value.split(":");
    const blockOf = (data) => (name ? data?.[kind]?.[name] : null);
    const xRange = sharedRange(loaded.map(({ data }) => blockOf(data)).filter(Boolean));
    cells.forEach((cell) => purge(cell.div));
    cells = [];
    grid.replaceChildren(...loaded.map(({ run, data, error }) => {
      const block = blockOf(data);
      const head = h("div.compare-dist-head", h("span.legend-swatch", { style: { background: view.colors.get(run.id) } }),
        h("a", { href: `#/runs/${run.id}` }, view.labels.get(run.id)));
      if (!block) return h("div.compare-dist", { dataset: { runId: run.id, state: "missing" } }, head, h("div.hist-cell", h("p.muted", missingText(run, { data, error }))));
      const cell = histogramCell(blockTitle(blockSelect.value), block, `run-${run.id}-${kind}-${name}`, { xRange });
      cells.push(cell);
      return h("div.compare-dist", { dataset: { runId: run.id, state: "drawn" } }, head, cell.cell);
    }));
    setText(note, xRange ? "one x range for every run" : "");
    await Promise.all(cells.map((cell) => cell.draw()));
    node.dataset.loaded = "true";
  }

  return {
    node,
    /** Redrawn only when a run's status changed (a histogram is recorded once, when its run finishes). */
    update(next) {
      view = next;
      const key = next.runs.map((run) => `${run.id}:${run.status}`).join();
      if (key === drawnKey) return null;
      drawnKey = key;
      return draw();
    },
    destroy() { cells.forEach((cell) => purge(cell.div)); },
  };
}
