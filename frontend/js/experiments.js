// The experiments: each with its grid, seeds, baseline and how far its runs have come.

import { api } from "./api.js";
import { FINISHED, fmtPct, fmtTime, fmtValue, h, poller, setText } from "./dom.js";
import { statusBar } from "./experiment.js";

const POLL_MS = 3000;
const PAGE = 100;

export async function renderExperimentsPage(root, query) {
  let offset = Number(query.get("offset")) || 0;
  // Archived experiments are left out unless asked for.
  let archived = query.get("archived") === "all" ? "all" : "false";
  const showArchived = h("label.nowrap", { title: "Also show archived experiments" },
    h("input", { type: "checkbox", dataset: { filter: "archived" }, checked: archived === "all",
      onchange: (e) => { archived = e.target.checked ? "all" : "false"; offset = 0; load(); } }),
    " show archived");
  const count = h("span.muted");
  const body = h("tbody");
  const empty = h("div.pad.muted.hidden", "No experiments yet. ", h("a", { href: "#/new" }, "Start one"), ".");
  const error = h("div.alert.error.hidden");
  const pageInfo = h("span.muted");
  const prev = h("button.small", { onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "‹ Prev");
  const next = h("button.small", { onclick: () => { offset += PAGE; load(); } }, "Next ›");
  root.append(
    h("div.page-head", h("h1", "Experiments"), count, h("div.actions", h("a.btn", { href: "#/new" }, "+ New experiment"))),
    error,
    h("div.toolbar", showArchived, h("div.pager", pageInfo, prev, next)),
    h("div.table-wrap", h("table.data.experiments",
      h("thead", h("tr", ["#", "Name", "Created", "Grid", "Seeds", "Baseline", "Runs", "Progress"].map((t) => h("th", t)))), body)),
    empty);

  const rows = new Map();
  async function load() {
    let page;
    try {
      page = await api("/api/experiments", { query: { limit: PAGE, offset, archived } });
    } catch (err) {
      error.textContent = `Could not load the experiments: ${err.message}`;
      error.classList.remove("hidden");
      return;
    }
    error.classList.add("hidden");
    const items = page.items || [];
    setText(count, `${(page.total ?? items.length).toLocaleString()} experiment${page.total === 1 ? "" : "s"}`);
    setText(pageInfo, items.length ? `${offset + 1}–${offset + items.length} of ${page.total}` : "");
    prev.disabled = offset === 0;
    next.disabled = offset + items.length >= (page.total ?? 0);
    empty.classList.toggle("hidden", items.length > 0);
    const keep = new Set();
    for (const e of items) {
      keep.add(e.id);
      const signature = JSON.stringify([e.counts, e.run_count, e.name, e.kind, e.archived]);
      let row = rows.get(e.id);
      if (row && row.signature === signature) { body.append(row.tr); continue; }
      const counts = e.counts || {};
      const total = e.run_count ?? Object.values(counts).reduce((a, b) => a + b, 0);
      const finished = [...FINISHED].reduce((n, s) => n + (counts[s] || 0), 0);
      const swept = Object.entries(e.grid || {}).map(([k, v]) => `${k}: ${v.map(fmtValue).join(", ")}`);
      // A search experiment has no grid of d: it looks for d_int90 itself, within its tolerance.
      if (e.kind === "search" && e.search) swept.unshift(`d: searched from ${fmtValue(e.search.d_start)}, within ×${fmtValue(1 + e.search.tolerance)}`);
      const grid = swept.join(" · ");
      const b = e.baseline || {};
      const tr = h("tr", { dataset: { experimentId: e.id } },
        h("td", h("a", { href: `#/experiments/${e.id}` }, `#${e.id}`)),
        h("td", h("a", { href: `#/experiments/${e.id}` }, e.name), e.archived ? h("span.tag", { style: { marginLeft: "6px" } }, "archived") : null),
        h("td", fmtTime(e.created_at)),
        h("td", { title: grid, style: { maxWidth: "420px", overflow: "hidden", textOverflow: "ellipsis" } }, grid || "–"),
        h("td", JSON.stringify(e.seeds || [])),
        h("td", b.mode === "global" ? `global ${fmtPct(b.value)}` : b.mode || "none"),
        h("td.num", String(total)),
        h("td", statusBar(counts, total), h("span.muted", { style: { marginLeft: "8px" } }, `${finished}/${total}`)));
      if (row) row.tr.replaceWith(tr);
      row = { tr, signature };
      rows.set(e.id, row);
      body.append(tr);
    }
    for (const [id, row] of rows) if (!keep.has(id)) { row.tr.remove(); rows.delete(id); }
  }
  await load();
  const poll = poller(load, POLL_MS);
  return () => poll.stop();
}
