// A runs table's ticked runs, to compare: how many are ticked (on any page), ticking every run of the page
// shown, clearing, and "Compare (n)", which opens #/compare?runs=… for 2 to MAX_COMPARE runs.

import { h, setText } from "../dom.js";
import { MAX_COMPARE, compareHref } from "./compare-runs.js";

const STORAGE_KEY = "idlab.runs.selection";

/** The runs page's ticked runs, kept for this tab's session (coming back from a comparison finds them ticked). */
export function storedSelection() {
  try {
    const ids = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "[]");
    return new Set(Array.isArray(ids) ? ids.filter(Number.isInteger) : []);
  } catch { return new Set(); }
}

function storeSelection(selection) {
  try { sessionStorage.setItem(STORAGE_KEY, JSON.stringify([...selection])); } catch { /* storage off: this page only */ }
}

/**
 * The bar: { node, paint() } for a RunTable (`table.selection`, `table.rows`, `table.paintSelection()`).
 * Call paint() after every change of the selection the table reports (its onSelection).
 * `store`: keep the selection in sessionStorage (the runs page).
 */
export function compareSelectionBar(table, { store = false } = {}) {
  const count = h("span.muted.nowrap", { dataset: { selection: "count" } });
  const message = h("span.faint", { dataset: { selection: "message" } });
  const compare = h("button.small.primary", { type: "button", dataset: { action: "compare" },
    onclick: () => { location.hash = compareHref([...table.selection].sort((a, b) => a - b)); } }, "Compare");
  const clear = h("button.small", { type: "button", dataset: { action: "clear-selection" }, title: "Untick every run",
    onclick: () => { table.selection.clear(); changed(); } }, "Clear");
  const selectPage = h("button.small", { type: "button", dataset: { action: "select-page" }, title: "Tick every run of the page shown",
    onclick: () => { for (const id of table.rows.keys()) table.selection.add(id); changed(); } }, "Select page");
  const node = h("div.compare-bar", count, selectPage, clear, compare, message);

  function paint() {
    const n = table.selection.size;
    setText(count, `${n} ticked`);
    setText(compare, `Compare (${n})`);
    compare.disabled = n < 2 || n > MAX_COMPARE;
    clear.disabled = n === 0;
    setText(message, n > MAX_COMPARE ? `Compare takes at most ${MAX_COMPARE} runs: untick ${n - MAX_COMPARE}.`
      : n < 2 ? "Tick 2 or more runs to compare them." : "");
    if (store) storeSelection(table.selection);
  }

  function changed() {
    table.paintSelection();
    table.options.onSelection?.([...table.selection]);
  }

  paint();
  return { node, paint };
}
