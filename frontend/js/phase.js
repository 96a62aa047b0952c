// What a running run is doing, as its progress reports it (idlab/metrics.py PHASES): "training",
// "evaluating", or "downloading 37 %" while its dataset is fetched (progress.download: bytes done / total).

import { fmtBytes } from "./dom.js";

/** The phase of `progress` in words, with the download's share when it is downloading; "" when none. */
export function phaseText(progress) {
  const phase = progress?.phase;
  if (!phase) return "";
  if (phase !== "downloading") return phase;
  const { done, total } = progress.download || {};
  if (typeof done !== "number") return phase;
  if (typeof total === "number" && total > 0) return `downloading ${Math.min(100, Math.floor((100 * done) / total))} %`;
  return `downloading ${fmtBytes(done)}`;
}
