// The API's 422 answers, shown beside the field each concerns. A detail's loc is (body,) base|grid|
// seeds|name|baseline|search, then the field and, in a grid, the value's index; POST /api/runs names
// the field alone.

import { fmtValue } from "../dom.js";
import { SEED_FIELD } from "./run-config-fields.js";

/** The input a detail concerns, and its message (a grid value named by its position). */
function targetOf(detail, request, inputs, targets) {
  const loc = (detail.loc || []).filter((p) => p !== "body");
  let message = detail.msg || "invalid";
  const point = detail.ctx?.grid_point ? ` (at ${Object.entries(detail.ctx.grid_point).map(([k, v]) => `${k}=${fmtValue(v)}`).join(", ")})` : "";
  let target = null;
  if (loc[0] === "base" && loc.length > 1) target = inputs.get(String(loc[1]));
  else if (loc[0] === "grid" && loc.length > 1) {
    target = inputs.get(String(loc[1]));
    if (typeof loc[2] === "number") {
      const values = request?.grid?.[loc[1]];
      message = `value ${loc[2] + 1}${values ? ` (${fmtValue(values[loc[2]])})` : ""}: ${message}`;
    }
  } else if (["seeds", "name", "baseline"].includes(loc[0])) target = targets[loc[0]];
  else if (loc[0] === "search") { target = targets.search; if (loc.length > 1) message = `${loc[1]}: ${message}`; }
  else if (loc.length === 1 && inputs.has(String(loc[0]))) target = inputs.get(String(loc[0]));   // POST /api/runs
  else if (loc[0] === SEED_FIELD) target = targets.seeds;
  return { target, message: message + (loc[0] === "grid" ? "" : point), where: loc.join(".") || "request" };
}

/**
 * Show each error of `err` beside its input (`inputs`: run-config fields by name; `targets`: the experiment's
 * own fields), the rest in `generalError`; scroll to the first unless `scroll` is false.
 */
export function showServerErrors(err, request, { inputs, targets, generalError }, scroll = true) {
  const general = [];
  let first = null;
  for (const detail of err.fieldErrors) {
    const { target, message, where } = targetOf(detail, request, inputs, targets);
    if (target) {
      target.showError(message);
      first ||= target;
    } else general.push(`${where}: ${detail.msg || "invalid"}`);
  }
  if (general.length) {
    generalError.textContent = general.join("\n");
    generalError.classList.remove("hidden");
  }
  if (scroll) (first?.node || generalError).scrollIntoView({ block: "center", behavior: "smooth" });
}
