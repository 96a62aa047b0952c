// What the compare page and its panels share: which runs a compare URL names (#/compare?runs=12,15,40),
// how many it takes at most, each run's colour, and the label that tells the runs apart (its id, its
// experiment and its values of the config fields that differ between them).

import { PALETTE, chip, fmtValue, h } from "../dom.js";

// One colour per run, none repeated (PALETTE has 12), and a legend that still reads.
export const MAX_COMPARE = PALETTE.length;
// The differing fields a legend names; the config table shows them all.
const LABEL_FIELDS = 4;

export function compareHref(ids) {
  return `#/compare?runs=${ids.join(",")}`;
}

/** The run ids of the `runs` parameter (comma-separated or repeated), in order, each once. */
export function parseRunIds(query) {
  const ids = query.getAll("runs").flatMap((value) => value.split(","))
    .map((text) => text.trim()).filter((text) => /^\d{1,15}$/.test(text)).map(Number).filter((id) => id >= 1);
  return [...new Set(ids)];
}

/** The config fields whose values are not the same in every run: `order` (the schema's) first, then the rest. */
export function differingFields(runs, order = []) {
  const names = [...new Set([...order, ...runs.flatMap((run) => Object.keys(run.config || {}))])];
  return names.filter((name) => new Set(runs.map((run) => JSON.stringify(run.config?.[name] ?? null))).size > 1);
}

/**
 * The comparison the panels draw: the runs found (in the URL's order), the fields that differ, and per
 * run id its colour and label. `experimentNames`: experiment id → name (or null while unknown).
 */
export function comparison(runs, fieldOrder, experimentNames) {
  const fields = differingFields(runs, fieldOrder);
  const colors = new Map(runs.map((run, i) => [run.id, PALETTE[i % PALETTE.length]]));
  const labels = new Map(runs.map((run) => [run.id, runLabel(run, fields, experimentNames)]));
  return { runs, fields, colors, labels, experimentNames };
}

function experimentText(run, experimentNames) {
  if (!run.experiment_id) return "no experiment";
  const name = experimentNames.get(run.experiment_id);
  return name ? `exp #${run.experiment_id} ${name}` : `exp #${run.experiment_id}`;
}

function runLabel(run, fields, experimentNames) {
  const values = fields.slice(0, LABEL_FIELDS).map((field) => `${field}=${fmtValue(run.config?.[field] ?? null)}`);
  if (fields.length > LABEL_FIELDS) values.push("…");
  return [`#${run.id}`, experimentText(run, experimentNames), ...values].join(" · ");
}

/** A table's column head for a run: its link, its colour, its experiment and its status. */
export function runHeadCell(run, view) {
  const experiment = run.experiment_id
    ? h("a", { href: `#/experiments/${run.experiment_id}` }, experimentText(run, view.experimentNames))
    : h("span.faint", "no experiment");
  return h("th", { dataset: { runId: run.id } },
    h("div.compare-head",
      h("span.legend-swatch", { style: { background: view.colors.get(run.id) } }),
      h("a", { href: `#/runs/${run.id}` }, `#${run.id}`), chip(run.status)),
    h("div.compare-exp", experiment));
}
