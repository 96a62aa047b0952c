// The form's preview: how many runs the request queues (counted here at once, then from the API's
// dry run with each run's D, k and dense-P memory), the request itself, and the submit buttons.

import { fmtBytes, fmtInt, h, setText } from "../dom.js";
import { baselineRunCount } from "./run-config-fields.js";

const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;

/** What the dry run says about dense P's memory, tolerant of the exact shape of its answer. */
function denseMemory(plan, runs) {
  const dense = runs.filter((r) => (r.config?.projection ?? r.projection) === "dense" && (r.config?.method ?? r.method) !== "direct");
  const bytesOf = (r) => r.dense_p_bytes ?? (r.D && r.k ? r.D * r.k * 4 : 0);
  return {
    total: plan.total_dense_p_bytes ?? plan.dense_p_bytes ?? dense.reduce((n, r) => n + bytesOf(r), 0),
    largest: plan.max_dense_p_bytes ?? dense.reduce((m, r) => Math.max(m, bytesOf(r)), 0),
  };
}

/** The panel: { node, submit, estimate(request), plan(answer) }. `onSingle()`: queue one run with the form's config. */
export function previewPanel({ onSingle }) {
  const count = h("div.big", { dataset: { preview: "runs" } }, "–");
  const detail = h("div.muted");
  const table = h("table.kv");
  const requestJson = h("pre");
  const submit = h("button.primary", { type: "submit", dataset: { action: "submit" } }, "Queue experiment");
  const single = h("button", { type: "button", title: "Queue one run with this config (no grid, one seed)", onclick: () => onSingle() }, "Queue one run");
  const node = h("div.panel.preview", { dataset: { section: "preview" } },
    h("h2", "Preview"), count, detail, table,
    h("details", h("summary.muted", "Request"), requestJson),
    h("div.submit-row", submit, single));
  const paintRows = (rows) => table.replaceChildren(h("tbody", rows.map(([k, v]) => h("tr", h("td", k), h("td.num", v)))));

  /** Counted from the request alone, before the dry run answers. */
  function estimate(request) {
    requestJson.textContent = JSON.stringify(request, null, 2);
    const gridPoints = Object.values(request.grid).reduce((n, v) => n * v.length, 1);
    const members = gridPoints * Math.max(1, request.seeds.length);
    const baselines = baselineRunCount(request);
    setText(count, plural(members + baselines, "run"));
    const gridDesc = Object.entries(request.grid).map(([k, v]) => `${v.length} ${k}`).join(" × ");
    setText(detail, `${gridDesc ? `${gridDesc} × ` : ""}${plural(request.seeds.length, "seed")}${baselines ? ` + ${plural(baselines, "baseline run")}` : ""}`);
    if (request.search) setText(detail, `round 1 of the search: ${detail.textContent}; later rounds follow as rounds finish`);
    single.disabled = Object.keys(request.grid).length > 0 || request.seeds.length !== 1 || request.baseline !== false || Boolean(request.search);
    paintRows([["grid points", fmtInt(gridPoints)], ["grid runs", fmtInt(members)], ["baseline runs", request.baseline === true ? fmtInt(baselines) : "–"]]);
  }

  /** The dry run's answer: counts, D and k, and D×k memory of the dense runs. */
  function plan(answer) {
    const runs = answer.runs || [];
    const total = answer.run_count ?? runs.length ?? answer.run_ids?.length;
    const baselines = answer.baseline_count ?? runs.filter((r) => r.role === "baseline").length;
    if (typeof total === "number") setText(count, plural(total, "run"));
    const memory = denseMemory(answer, runs);
    const sizes = runs.filter((r) => r.D).map((r) => r.D);
    const rows = [["runs", fmtInt(total)], ["baseline runs", fmtInt(baselines)]];
    if (sizes.length) rows.push(["D", [...new Set(sizes)].map(fmtInt).join(", ")]);
    const ks = runs.filter((r) => r.k && r.role !== "baseline").map((r) => r.k);
    if (ks.length) rows.push(["k", `${fmtInt(Math.min(...ks))} – ${fmtInt(Math.max(...ks))}`]);
    rows.push(["dense P, all runs (D×k×4 B)", fmtBytes(memory.total)], ["largest dense P", fmtBytes(memory.largest)]);
    if (answer.kind === "search") rows.splice(2, 0, ["groups searched", fmtInt(answer.group_count)], ["runs at most (all rounds)", fmtInt(answer.max_run_count)]);
    for (const w of answer.warnings || []) rows.push(["warning", w]);
    paintRows(rows);
  }

  return { node, submit, estimate, plan };
}
