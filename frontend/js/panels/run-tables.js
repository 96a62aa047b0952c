// A run's config (every field in the schema's order, bold where it differs from the default, with the
// field's help) and its status, timings and final metrics: two key–value tables.

import { fmtDuration, fmtNum, fmtTime, fmtValue, h } from "../dom.js";
import { sameValue } from "../schema.js";
import { liveDuration } from "./run-cards.js";

function paintRows(box, rows) {
  box.replaceChildren(...rows.map(([key, value, changed, help]) =>
    h("div", { dataset: { key } }, h("span.k", { title: help || "" }, key), h(`span.v${changed ? ".changed" : ""}`, value))));
}

function kvPanel(title, note, section) {
  const box = h("div.kv-grid", { dataset: { section } });
  return { box, node: h("div.panel", h("div.panel-head", h("h2", title), note ? h("span.faint", note) : null), box) };
}

/** The config table: { node, update(run) }. `schema`: the run-config schema (null: the fields as stored). */
export function configPanel(schema) {
  const { box, node } = kvPanel("Config", "bold: differs from the default", "config");
  return {
    node,
    update(run) {
      const config = run.config || {};
      const rows = [];
      const known = new Set();
      for (const field of schema?.fields || []) {
        known.add(field.name);
        if (field.name in config) rows.push([field.name, fmtValue(config[field.name]), !sameValue(config[field.name], field.default), field.description]);
      }
      for (const [key, value] of Object.entries(config)) if (!known.has(key)) rows.push([key, fmtValue(value), false]);
      paintRows(box, rows);
    },
  };
}

/** Status, timings and final metrics: { node, update(run) }. */
export function timingsPanel() {
  const { box, node } = kvPanel("Status, timings and final metrics", null, "timings");
  return {
    node,
    update(run) {
      const rows = [
        ["created", fmtTime(run.created_at)], ["queued", fmtTime(run.queued_at)], ["started", fmtTime(run.started_at)],
        ["finished", fmtTime(run.finished_at)], ["last heartbeat", fmtTime(run.heartbeat_at)],
        ["duration", fmtDuration(liveDuration(run))], ["worker", run.worker || "–"], ["attempt", String(run.attempt ?? "–")],
        ["cancel requested", run.cancel_requested ? "yes" : "no"],
      ];
      for (const [key, value] of Object.entries(run.final_metrics || {})) {
        rows.push([`final ${key}`, typeof value === "number" ? fmtNum(value, 5) : fmtValue(value)]);
      }
      paintRows(box, rows);
    },
  };
}
