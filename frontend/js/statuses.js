// The statuses of runs and of search groups, as the API lists them (GET /api/config/schema, from the
// server's own constants): read once before the first page is drawn, then asked synchronously.
// Only how each status looks (its colour) is the dashboard's own.

import { labSchema } from "./schema.js";

let known = null;

/** Read the statuses (once); every page is drawn after this resolves. */
export async function loadStatuses() {
  if (known) return known;
  const schema = await labSchema();
  known = {
    run: schema.run_statuses,
    finished: new Set(schema.finished_statuses),
    retryable: new Set(schema.retryable_statuses),
    search: schema.search_statuses,
  };
  return known;
}

function statuses() {
  if (!known) throw new Error("the run statuses are not loaded yet (loadStatuses)");
  return known;
}

/** Every run status, in the lifecycle's order (queued → running → the finished ones). */
export const runStatuses = () => statuses().run;
/** A run in one of these changes no more. */
export const isFinished = (status) => statuses().finished.has(status);
/** A run in one of these can be queued again. */
export const isRetryable = (status) => statuses().retryable.has(status);
export const finishedStatuses = () => [...statuses().finished];

const COLORS = {
  queued: "#98a2b3", running: "#2457c5", succeeded: "#12b76a", failed: "#d92d20", cancelled: "#7a5af8", diverged: "#f79009",
};

/** A status's colour in bars and charts (style.css's .st-<status> chips match it). */
export function statusColor(status) {
  return COLORS[status] || "#98a2b3";
}
