// The experiments: a live table of them, paged, archived ones shown on request, filtered by tags
// (#/experiments?tag=…&tag=…: those holding every one; in the URL, so a filtered list can be shared).

import { api } from "./api.js";
import { h, setText } from "./dom.js";
import { live } from "./live.js";
import { replaceQuery } from "./nav.js";
import { experimentsTablePanel } from "./panels/experiments-table.js";
import { tagInput } from "./panels/tags-notes.js";

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
  let tags = query.getAll("tag").map((t) => t.trim()).filter(Boolean);
  const tagChips = h("span.toolbar", { style: { margin: "0" } });
  const setTags = (next) => { tags = next; offset = 0; paintTags(); load(); };
  const addTag = (tag) => { if (!tags.some((t) => t.toLowerCase() === tag.toLowerCase())) setTags([...tags, tag]); };
  const tagFilter = tagInput({ placeholder: "tag…", title: "Only the experiments holding this tag (Enter; several: all of them)", dataset: { filter: "tag" }, onTag: addTag });
  function paintTags() {
    tagChips.replaceChildren(...tags.map((tag) => h("span.filter-chip", { dataset: { tagFilter: tag } }, `tag: ${tag}`,
      h("button", { title: "Remove this filter", onclick: () => setTags(tags.filter((t) => t !== tag)) }, "×"))));
  }
  // A tag clicked in the table narrows the list, rather than replacing its filters.
  table.node.addEventListener("click", (event) => {
    const link = event.target.closest("a.tag-link[data-tag]");
    if (link) { event.preventDefault(); addTag(link.dataset.tag); }
  });
  paintTags();
  root.append(
    h("div.page-head", h("h1", "Experiments"), count, h("div.actions", h("a.btn", { href: "#/new" }, "+ New experiment"))),
    error, h("div.toolbar", showArchived, h("span.sep"), tagFilter, tagChips, h("div.pager", pageInfo, prev, next)), table.node);

  function syncUrl() {
    const params = new URLSearchParams();
    if (archived !== "false") params.set("archived", archived);
    for (const tag of tags) params.append("tag", tag);
    if (offset) params.set("offset", offset);
    replaceQuery(params);
  }

  async function load() {
    syncUrl();
    let page;
    try {
      page = await api("/api/experiments", { query: { limit: PAGE, offset, archived, tag: tags } });
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
