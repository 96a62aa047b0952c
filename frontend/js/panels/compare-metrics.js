// The compared runs' final metrics side by side: one column per run, one row per metric (the lab's final
// metric keys, GET /api/config/schema), the best value of each row marked where "best" has a meaning.
// A running run shows its latest values (its progress), in italics.

import { chip, fmtBytes, fmtDuration, fmtInt, fmtNum, fmtPct, h } from "../dom.js";
import { liveDuration } from "./run-cards.js";
import { runHeadCell } from "./compare-runs.js";

const PERCENT = new Set(["test_acc", "train_acc", "best_test_acc"]);
const BYTES = new Set(["model_bytes", "network_bytes"]);
const INTEGER = new Set(["D", "k", "d", "epochs", "steps", "lr_reductions"]);
// Which way is better, for the rows where one is: accuracies and compression up; losses, sizes and time down.
const BETTER = { test_acc: "max", train_acc: "max", best_test_acc: "max", compression: "max",
  test_loss: "min", train_loss: "min", model_bytes: "min", duration: "min" };

function format(key, value) {
  if (PERCENT.has(key)) return fmtPct(value);
  if (BYTES.has(key)) return fmtBytes(value);
  if (INTEGER.has(key)) return fmtInt(value);
  if (key === "duration") return fmtDuration(value);
  if (key === "compression") return typeof value === "number" ? `${fmtNum(value, 3)}×` : "–";
  return fmtNum(value, 5);
}

/** A run's value of `key` and whether it is final: its final metrics, else its sizes, else (running) its progress. */
function valueOf(run, key) {
  if (key === "duration") return [liveDuration(run), run.status !== "running"];
  const final = run.final_metrics?.[key];
  if (typeof final === "number") return [final, true];
  if (["D", "k", "d"].includes(key) && typeof run[key] === "number") return [run[key], true];
  const latest = run.status === "running" ? run.progress?.[key] : undefined;
  return typeof latest === "number" ? [latest, false] : [null, true];
}

/** The ids whose value is best, when at least two runs have one and they are not all equal. */
function bestIds(key, values) {
  const known = values.filter(([, value]) => typeof value === "number" && Number.isFinite(value));
  if (!BETTER[key] || known.length < 2) return new Set();
  const numbers = known.map(([, value]) => value);
  const best = BETTER[key] === "max" ? Math.max(...numbers) : Math.min(...numbers);
  if (numbers.every((value) => value === best)) return new Set();
  return new Set(known.filter(([, value]) => value === best).map(([id]) => id));
}

function metricRow(key, runs) {
  const values = runs.map((run) => [run.id, ...valueOf(run, key)]);
  if (values.every(([, value]) => value === null)) return null;
  const best = bestIds(key, values);
  return h("tr", { dataset: { metric: key } }, h("th.field-name", key),
    values.map(([id, value, final]) => h(`td.num${best.has(id) ? ".best" : ""}${final ? "" : ".latest"}`, {
      dataset: { runId: id }, title: best.has(id) ? "best of these runs" : final ? "" : "latest value: the run is still going",
    }, format(key, value))));
}

/** The panel: { node, update(view, finalKeys) }, finalKeys the lab's final metric keys in their order. */
export function compareMetricsPanel() {
  const table = h("table.data.compare-table", { dataset: { table: "metrics" } });
  const node = h("div.panel", { dataset: { section: "compare-metrics" } },
    h("div.panel-head", h("h2", "Final metrics"), h("span.faint", "bold: the best of these runs · italics: latest, still running")),
    h("div.table-wrap", table));
  return {
    node,
    update(view, finalKeys) {
      const keys = [...finalKeys.filter((key) => key !== "seconds"), "duration"];
      const status = h("tr", { dataset: { metric: "status" } }, h("th.field-name", "status"),
        view.runs.map((run) => h("td", { dataset: { runId: run.id }, title: run.error || "" }, chip(run.status))));
      table.replaceChildren(h("thead", h("tr", h("th", "metric"), view.runs.map((run) => runHeadCell(run, view)))),
        h("tbody", status, keys.map((key) => metricRow(key, view.runs))));
    },
  };
}
