// The d_int90 table: per group, how many runs finished and were left out, the baseline and threshold,
// d_int90 (first grid d, interpolated, interval), D / d_int90, and the model file at d_int90 against θ_D's bytes.

import { PALETTE, fmtFileSize, fmtInt, fmtNum, fmtPct, h, setText } from "../dom.js";
import { isFinished } from "../statuses.js";
import {
  EXCLUDED_HELP, NOT_CONVERGED_HELP, dint90Text, excludedText, groupLabel, intervalMethodText, intervalText,
} from "../summary-text.js";

const MODEL_FILE_HELP = "mean size of the model files of the runs at d_int90 (config, seed and θ_d: " +
  "`idlab evaluate FILE` rebuilds the network), against θ_D stored as D float32s";

const COLUMNS = [["Group"], ["Finished", ".num"], ["Left out", ".num", EXCLUDED_HELP], ["Baseline", ".num"], ["Threshold", ".num"],
  ["d_int90", ".num"], ["Interpolated", ".num", "interpolated linearly in log d between the grid points that bracket the threshold"],
  ["Interval", ".num"], ["D", ".num"], ["D / d_int90", ".num"],
  ["Model file", ".num", MODEL_FILE_HELP], ["Compression", ".num", "θ_D's bytes (D × 4) over the model file's at d_int90"]];

function notConvergedChip(group) {
  if (!group.not_converged) return null;
  const ids = group.not_converged_run_ids || [];
  return h("span.chip.st-diverged", { dataset: { notConverged: ids.join(",") },
    title: `${NOT_CONVERGED_HELP}\nruns: ${ids.map((id) => `#${id}`).join(", ")}` }, "not converged");
}

function dint90Row(group, index, summary) {
  const fields = summary.fields || [];
  const counts = group.counts || {};
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const done = Object.entries(counts).reduce((n, [status, c]) => n + (isFinished(status) ? c : 0), 0);
  const reached = group.d_int90 !== null && group.d_int90 !== undefined;
  const excluded = excludedText(group.excluded);
  const chip = notConvergedChip(group);
  return h("tr", { dataset: { group: groupLabel(group, fields), atMin: String(!!group.d_int90_at_min), notReached: String(!!group.d_int90_not_reached) } },
    h("td", h("span.legend-swatch", { style: { background: PALETTE[index % PALETTE.length] } }), groupLabel(group, fields), chip ? " " : null, chip),
    h("td.num", `${done}/${total}`),
    h("td.num", { title: EXCLUDED_HELP, dataset: { excluded: JSON.stringify(group.excluded || {}) } }, excluded || "–"),
    h("td.num", fmtPct(group.baseline ?? summary.baseline)),
    h("td.num", fmtPct(group.threshold ?? summary.threshold)),
    h("td.num", dint90Text(group)),
    h("td.num", dint90Text(group, true)),
    h("td.num", intervalText(group)),
    h("td.num", fmtInt(group.D)),
    // d_int90 ≤ d_min makes D / d_int90 a lower bound
    h("td.num", reached && group.D ? `${group.d_int90_at_min ? "≥ " : ""}${fmtNum(group.D / group.d_int90, 4)}×` : "–"),
    ...modelFileCells(group));
}

/** The model file at d_int90, "4.8 KB of 797 KB", and the ratio; dashes until d_int90 has runs with files. */
function modelFileCells(group) {
  const bytes = group.d_int90_model_bytes, ratio = group.d_int90_compression;
  return [
    h("td.num", { dataset: { modelBytes: bytes ?? "" }, title: MODEL_FILE_HELP },
      typeof bytes === "number" ? `${fmtFileSize(bytes)} of ${fmtFileSize(group.network_bytes)}` : "–"),
    h("td.num", { dataset: { compression: ratio ?? "" } }, typeof ratio === "number" ? `${fmtNum(ratio, 3)}×` : "–"),
  ];
}

/** The panel: { node, update(summary) }. */
export function dint90TablePanel() {
  const body = h("tbody");
  const note = h("span.faint");
  const node = h("div.panel", { dataset: { section: "dint90" } },
    h("div.panel-head", h("h2", "d_int90 per group"), note),
    h("div.table-wrap", h("table.data.dint",
      h("thead", h("tr", COLUMNS.map(([t, cls = "", title]) => h(`th${cls}`, { title }, t)))), body)));

  function update(summary) {
    const rows = (summary?.groups || []).map((g, i) => dint90Row(g, i, summary));
    body.replaceChildren(...(rows.length ? rows : [h("tr", h("td.muted", { colSpan: COLUMNS.length }, "No groups yet."))]));
    const fraction = Math.round(100 * (summary?.fraction ?? 0.9));
    setText(note, `smallest grid d whose mean test accuracy reaches ${fraction}% of the baseline` +
      (summary?.d_int90_method ? ` · ${intervalMethodText(summary)}` : ""));
    note.dataset.intervalMethod = summary?.d_int90_method || "";
  }

  return { node, update, destroy() {} };
}
