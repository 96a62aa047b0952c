// The experiments: a live table of them, paged, archived ones shown on request.

import { api } from "./api.js";
import { h, setText } from "./dom.js";
import { live } from "./live.js";
import { experimentsTablePanel } from "./panels/experiments-table.js";

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
  const error = h("div.alert.error.hidden");
  const pageInfo = h("span.muted");
  const prev = h("button.small", { onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "‹ Prev");
  const next = h("button.small", { onclick: () => { offset += PAGE; load(); } }, "Next ›");
  const table = experimentsTablePanel();
  root.append(
    h("div.page-head", h("h1", "Experiments"), count, h("div.actions", h("a.btn", { href: "#/new" }, "+ New experiment"))),
    error, h("div.toolbar", showArchived, h("div.pager", pageInfo, prev, next)), table.node);

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
    table.update(items);
  }
  await load();
  // The list has no event stream: it polls.
  const updates = live({ poll: async () => { await load(); return false; }, pollMs: POLL_MS });
  return () => updates.close();
}
