// The runs page: every run in one live table (filters, pages and sorting in the URL); runs ticked on any
// page (kept for the tab's session) are compared side by side.

import { h, setText } from "./dom.js";
import { compareSelectionBar, storedSelection } from "./panels/compare-selection.js";
import { RunTable, tableStateFromQuery } from "./panels/runs-table.js";

export async function renderRunsPage(root, query) {
  const count = h("span.muted");
  const table = new RunTable({
    ...tableStateFromQuery(query), syncUrl: true,
    selectable: true, selectTitle: "Tick to compare this run", selection: storedSelection(),
    onSelection: () => compareBar.paint(),
    onRuns: (runs, changed, total) => setText(count, `${total.toLocaleString()} run${total === 1 ? "" : "s"}`),
  });
  const compareBar = compareSelectionBar(table, { store: true });
  root.append(
    h("div.page-head", h("h1", "Runs"), count, h("div.actions", h("a.btn", { href: "#/new" }, "+ New experiment"))),
    compareBar.node,
    table.node,
  );
  await table.start();
  return () => table.stop();
}
