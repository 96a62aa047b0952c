// How far a set of runs has come: a bar of their statuses, and "n/total finished" with a chip per status.

import { h } from "../dom.js";
import { isFinished, runStatuses, statusColor } from "../statuses.js";

export function finishedCount(counts) {
  return Object.entries(counts || {}).reduce((n, [status, c]) => n + (isFinished(status) ? c : 0), 0);
}

/** A thin bar, one segment per status in the lifecycle's order, as wide as its share of `total`. */
export function statusBar(counts, total) {
  const present = runStatuses().filter((s) => counts[s]);
  const bar = h("span.status-bar", { title: present.map((s) => `${s}: ${counts[s]}`).join("\n") });
  for (const s of present) {
    bar.append(h("span", { style: { width: `${(100 * counts[s]) / Math.max(1, total)}%`, background: statusColor(s) } }));
  }
  return bar;
}

/** The bar, "n/total finished" and a chip per status present. */
export function statusCounts(counts, total) {
  return [statusBar(counts, total), h("span.muted", { style: { marginLeft: "8px" } }, `${finishedCount(counts)}/${total} finished`),
    ...runStatuses().filter((s) => counts[s]).map((s) => h(`span.chip.st-${s}`, { style: { marginLeft: "6px" } }, `${counts[s]} ${s}`))];
}
