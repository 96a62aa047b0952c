// An experiment summary's groups and d_int90 in words, as the experiment page's panels show them
// (docs/statistics.md says what each flag means).

import { fmtInt, fmtNum, fmtValue } from "./dom.js";

// How the summary's interval is drawn.
const INTERVAL_METHODS = {
  student_t: "Student-t draw of each d's mean over seeds",
  seed_bootstrap: "seed bootstrap (resamples each d's runs)",
};
export const EXCLUDED_HELP = "finished runs left out of the curve and d_int90: n at each d counts succeeded runs only";
export const NOT_CONVERGED_HELP = "some runs' best test accuracy came at their last epoch: they were still improving, " +
  "so more epochs could raise the curve and lower d_int90";

/** "linear", or "augmentation=rff, model=fc" when the grid sweeps several fields besides d. */
export function groupLabel(group, fields) {
  if (!fields.length) return "all runs";
  if (fields.length === 1) return fmtValue(group[fields[0]]);
  return fields.map((f) => `${f}=${fmtValue(group[f])}`).join(", ");
}

export function sameGroup(config, group, fields) {
  return fields.every((f) => JSON.stringify(config[f]) === JSON.stringify(group[f]));
}

/** One run per d (its lowest seed, then lowest id), ordered by d: a group's runs at a glance. */
export function onePerD(runs) {
  const byD = new Map();
  for (const run of [...runs].sort((a, b) => a.config.seed - b.config.seed || a.id - b.id)) {
    if (!byD.has(run.config.d)) byD.set(run.config.d, run);
  }
  return [...byD.values()].sort((a, b) => a.config.d - b.config.d);
}

export function intervalMethodText(summary) {
  const method = summary?.d_int90_method;
  if (!method) return "";
  return `${Math.round(100 * (summary.d_int90_confidence ?? 0.95))}% interval: ${INTERVAL_METHODS[method] || method}`;
}

export const smallestD = (group) => Math.min(...(group.points || []).map((p) => p.d));
export const largestD = (group) => Math.max(...(group.points || []).map((p) => p.d));

// d_int90 as read: "≤ d_min" when the smallest d already reaches the threshold, "not reached (> d_max)".
export function dint90Text(group, interpolated = false) {
  if (group.d_int90_not_reached) return `not reached (> ${fmtNum(largestD(group))})`;
  const value = interpolated ? group.d_int90_interpolated : group.d_int90;
  if (value === null || value === undefined) return "–";
  return group.d_int90_at_min ? `≤ ${fmtNum(value)}` : fmtNum(value);
}

// [lo, hi]: hi null is "not reached"; lo at the smallest d reads "≤ d_min".
export function intervalText(group) {
  const [lo, hi] = group.d_int90_interval || [null, null];
  if (lo === null && hi === null) {
    if (group.d_int90_interval) return "[not reached]";
    // No spread to resample: every d has a single run (docs/statistics.md).
    const single = (group.points || []).length > 0 && group.points.every((p) => p.n < 2);
    return single ? "– (one run per d: no spread to estimate)" : "–";
  }
  const low = lo !== null && lo <= smallestD(group) ? `≤ ${fmtNum(lo)}` : fmtNum(lo);
  return `[${low}, ${hi === null ? "not reached" : fmtNum(hi)}]`;
}

// "2 diverged · 1 failed", or "" when nothing finished was left out.
export function excludedText(excluded) {
  const labels = { diverged: "diverged", failed: "failed", cancelled: "cancelled", no_accuracy: "no accuracy" };
  return Object.entries(labels).filter(([key]) => (excluded || {})[key]).map(([key, label]) => `${excluded[key]} ${label}`).join(" · ");
}

// What a reader of a group's curve must know: runs left out, runs still improving.
export function groupWarnings(group) {
  const excluded = excludedText(group.excluded);
  return [excluded ? `left out: ${excluded}` : "", group.not_converged ? "not converged: best test accuracy at the last epoch" : ""]
    .filter(Boolean);
}

export function searchText(search) {
  if (!search) return "";
  return `Search for d: from d = ${fmtInt(search.d_start)}, doubled (up to d_max = ${fmtInt(search.d_max)}) until the mean ` +
    `reaches the threshold, then bisected on a log scale until hi / lo ≤ ${fmtNum(1 + search.tolerance)}; at most ${search.max_rounds} rounds per group`;
}

export function bracketText(bracket) {
  const [lo, hi] = bracket || [null, null];
  if (lo === null && hi === null) return "–";
  return `(${lo === null ? "0" : fmtInt(lo)}, ${hi === null ? "∞" : fmtInt(hi)}]`;
}
