// The experiments table: each experiment with its grid (or search), seeds, baseline and how far its
// runs have come. A row is rebuilt only when what it shows changed.

import { fmtPct, fmtTime, fmtValue, h } from "../dom.js";
import { finishedCount, statusBar } from "./status-bar.js";
import { tagLinks } from "./tags-notes.js";

const COLUMNS = ["#", "Name", "Tags", "Created", "Grid", "Seeds", "Baseline", "Runs", "Progress"];

function gridText(e) {
  const swept = Object.entries(e.grid || {}).map(([k, v]) => `${k}: ${v.map(fmtValue).join(", ")}`);
  // A search experiment has no grid of d: it looks for d_int90 itself, within its tolerance.
  if (e.kind === "search" && e.search) swept.unshift(`d: searched from ${fmtValue(e.search.d_start)}, within ×${fmtValue(1 + e.search.tolerance)}`);
  return swept.join(" · ");
}

function experimentRow(e) {
  const counts = e.counts || {};
  const total = e.run_count ?? Object.values(counts).reduce((a, b) => a + b, 0);
  const grid = gridText(e);
  const b = e.baseline || {};
  return h("tr", { dataset: { experimentId: e.id } },
    h("td", h("a", { href: `#/experiments/${e.id}` }, `#${e.id}`)),
    h("td", h("a", { href: `#/experiments/${e.id}` }, e.name), e.archived ? h("span.tag", { style: { marginLeft: "6px" } }, "archived") : null),
    h("td", { dataset: { col: "tags" } }, h("span.tag-cell", tagLinks(e.tags, "/experiments"))),
    h("td", fmtTime(e.created_at)),
    h("td", { title: grid, style: { maxWidth: "420px", overflow: "hidden", textOverflow: "ellipsis" } }, grid || "–"),
    h("td", JSON.stringify(e.seeds || [])),
    h("td", b.mode === "global" ? `global ${fmtPct(b.value)}` : b.mode || "none"),
    h("td.num", String(total)),
    h("td", statusBar(counts, total), h("span.muted", { style: { marginLeft: "8px" } }, `${finishedCount(counts)}/${total}`)));
}

/** The panel: { node, update(experiments) }. */
export function experimentsTablePanel() {
  const body = h("tbody");
  const empty = h("div.pad.muted.hidden", "No experiments yet. ", h("a", { href: "#/new" }, "Start one"), ".");
  const node = h("div",
    h("div.table-wrap", h("table.data.experiments", h("thead", h("tr", COLUMNS.map((t) => h("th", t)))), body)),
    empty);
  const rows = new Map();            // id → { tr, signature }

  function update(items) {
    empty.classList.toggle("hidden", items.length > 0);
    const keep = new Set();
    for (const e of items) {
      keep.add(e.id);
      const signature = JSON.stringify([e.counts, e.run_count, e.name, e.kind, e.archived, e.tags]);
      let row = rows.get(e.id);
      if (row && row.signature === signature) { body.append(row.tr); continue; }
      const tr = experimentRow(e);
      if (row) row.tr.replaceWith(tr);
      row = { tr, signature };
      rows.set(e.id, row);
      body.append(tr);
    }
    for (const [id, row] of rows) if (!keep.has(id)) { row.tr.remove(); rows.delete(id); }
  }

  return { node, update, destroy() {} };
}
