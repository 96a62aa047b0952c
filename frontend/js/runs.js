// The runs page: every run in one live table (filters, pages and sorting in the URL).

import { h, setText } from "./dom.js";
import { RunTable, tableStateFromQuery } from "./panels/runs-table.js";

export async function renderRunsPage(root, query) {
  const count = h("span.muted");
  const table = new RunTable({
    ...tableStateFromQuery(query), syncUrl: true,
    onRuns: (runs, changed, total) => setText(count, `${total.toLocaleString()} run${total === 1 ? "" : "s"}`),
  });
  root.append(
    h("div.page-head", h("h1", "Runs"), count, h("div.actions", h("a.btn", { href: "#/new" }, "+ New experiment"))),
    table.node,
  );
  await table.start();
  return () => table.stop();
}
