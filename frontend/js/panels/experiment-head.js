// The experiment page's head: name, id and date, how far its runs have come, and its actions (exports,
// clone into the form, cancel what remains, archive, delete); below it, the grid, seeds and baseline
// (and a search's parameters).

import { api } from "../api.js";
import { fmtPct, fmtTime, fmtValue, h, toast } from "../dom.js";
import { isFinished } from "../statuses.js";
import { searchText } from "../summary-text.js";
import { statusCounts } from "./status-bar.js";

function exportLink(id, format) {
  return h("a.btn", { href: `/api/experiments/${id}/export?format=${format}`, download: `experiment-${id}.${format}`, dataset: { export: format } },
    `Export ${format.toUpperCase()}`);
}

/** "Grid: d ∈ {…} × augmentation ∈ {…} · seeds [0, 1] · baseline: …", and for a search its parameters. */
function infoLine(experiment) {
  const gridText = Object.entries(experiment.grid || {}).map(([k, vals]) => `${k} ∈ {${vals.map(fmtValue).join(", ")}}`).join(" × ");
  const baseline = experiment.baseline || {};
  const searching = experiment.kind === "search";
  return h("p.muted", { style: { margin: "-6px 0 12px" }, dataset: { kind: experiment.kind || "grid" } },
    gridText ? `Grid: ${gridText}` : searching ? "One group" : "No grid", ` · seeds ${JSON.stringify(experiment.seeds || [])}`,
    ` · baseline: ${baseline.mode === "global" ? `global ${fmtPct(baseline.value)}` : baseline.mode === "individual" ? "individual (direct-training runs)" : "none"}`,
    searching ? h("br") : null, searching ? searchText(experiment.search) : null);
}

/**
 * The head: { nodes, update(experiment) }. `onCancelled()`: some runs were cancelled (the page re-reads).
 */
export function experimentHead(initial, { onCancelled }) {
  let experiment = initial;
  const countsBox = h("span.nowrap");
  const archivedTag = h("span.tag.hidden", { title: "Hidden from the experiments and runs lists" }, "archived");
  const archiveButton = h("button", { onclick: toggleArchived, dataset: { action: "archive" } });
  const cancelButton = h("button.danger", { onclick: cancelRemaining, dataset: { action: "cancel-remaining" },
    title: "Cancel every queued or running run of this experiment" }, "Cancel remaining");
  const head = h("div.page-head",
    h("h1", experiment.name), h("span.muted", `#${experiment.id} · ${fmtTime(experiment.created_at)}`), archivedTag, countsBox,
    h("div.actions", exportLink(experiment.id, "csv"), exportLink(experiment.id, "json"),
      h("a.btn", { href: `#/new?clone_experiment=${experiment.id}` }, "Clone into form"),
      cancelButton,
      archiveButton,
      h("button.danger", { onclick: deleteExperiment, dataset: { action: "delete" }, title: "Delete this experiment, its runs and their curves" }, "Delete")));

  function paint() {
    archivedTag.classList.toggle("hidden", !experiment.archived);
    archiveButton.textContent = experiment.archived ? "Unarchive" : "Archive";
    archiveButton.title = experiment.archived ? "Show this experiment and its runs in the lists again"
      : "Hide this experiment and its runs from the lists (nothing is deleted)";
    const counts = experiment.counts || {};
    // Shown only while something is left to cancel.
    cancelButton.classList.toggle("hidden", !Object.entries(counts).some(([status, n]) => n > 0 && !isFinished(status)));
    countsBox.replaceChildren(...statusCounts(counts, experiment.run_count ?? Object.values(counts).reduce((a, b) => a + b, 0)));
  }

  async function toggleArchived() {
    try {
      const updated = await api(`/api/experiments/${experiment.id}`, { method: "PATCH", body: { archived: !experiment.archived } });
      experiment = { ...experiment, archived: updated.archived };
      paint();
      toast(updated.archived ? "Archived: hidden from the lists" : "Unarchived");
    } catch (err) {
      toast(err.message, "error", 6000);
    }
  }

  async function deleteExperiment() {
    const total = experiment.run_count ?? (experiment.runs || []).length;
    if (!confirm(`Delete experiment '${experiment.name}' and its ${total} run${total === 1 ? "" : "s"}, with their curves and distributions? This cannot be undone.`)) return;
    try {
      await api(`/api/experiments/${experiment.id}`, { method: "DELETE" });
    } catch (err) {
      toast(err.message, "error", 8000);
      return;
    }
    toast(`Experiment #${experiment.id} deleted`);
    location.hash = "#/experiments";
  }

  async function cancelRemaining() {
    const open = (experiment.runs || []).filter((r) => !isFinished(r.status));
    if (!open.length) { toast("Nothing left to cancel"); return; }
    if (!confirm(`Cancel ${open.length} queued or running run(s) of this experiment?`)) return;
    let failed = 0;
    for (const run of open) {
      try { await api(`/api/runs/${run.id}/cancel`, { method: "POST" }); } catch { failed += 1; }
    }
    toast(failed ? `${open.length - failed} cancelled, ${failed} could not be (already finished?)` : `${open.length} run(s) cancelled`);
    onCancelled();
  }

  paint();
  return {
    nodes: [head, infoLine(experiment)],
    update(next) { experiment = next; paint(); },
  };
}
