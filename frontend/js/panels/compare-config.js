// The compared runs' configs side by side: one column per run, one row per config field (the schema's
// order), the rows whose values differ highlighted; "only differences" (the default) hides the others.

import { fmtValue, h, setText } from "../dom.js";
import { runHeadCell } from "./compare-runs.js";

/** The panel: { node, update(view, fieldOrder) }, fieldOrder the schema's field names. */
export function compareConfigPanel() {
  const onlyDiffs = h("input", { type: "checkbox", checked: true, dataset: { toggle: "only-differences" }, onchange: () => paintHidden() });
  const note = h("span.muted");
  const table = h("table.data.compare-table", { dataset: { table: "config" } });
  const allSame = h("p.muted.hidden", "Every config field has the same value in these runs.");
  const node = h("div.panel", { dataset: { section: "compare-config" } },
    h("div.panel-head", h("h2", "Config"), note,
      h("div.actions", h("label.nowrap", onlyDiffs, " show only differences"))),
    allSame, h("div.table-wrap", table));

  function paintHidden() {
    let shown = 0;
    for (const tr of table.tBodies[0]?.rows || []) {
      const hide = onlyDiffs.checked && !tr.classList.contains("differs");
      tr.classList.toggle("hidden", hide);
      if (!hide) shown += 1;
    }
    allSame.classList.toggle("hidden", shown > 0);
  }

  return {
    node,
    update(view, fieldOrder) {
      const differs = new Set(view.fields);
      const names = [...new Set([...fieldOrder, ...view.runs.flatMap((run) => Object.keys(run.config || {}))])]
        .filter((name) => view.runs.some((run) => name in (run.config || {})));
      const rows = names.map((name) => h(`tr${differs.has(name) ? ".differs" : ""}`, { dataset: { field: name } },
        h("th.field-name", name),
        view.runs.map((run) => h("td.mono", { dataset: { runId: run.id } }, name in (run.config || {}) ? fmtValue(run.config[name]) : "–"))));
      table.replaceChildren(h("thead", h("tr", h("th", "field"), view.runs.map((run) => runHeadCell(run, view)))), h("tbody", rows));
      setText(note, `${differs.size} of ${names.length} fields differ`);
      paintHidden();
    },
  };
}
