// A run's error and warnings, shown above its cards while it has any.

import { h, setText } from "../dom.js";

/** The alerts: { nodes, update(run) }. */
export function runAlerts() {
  const errorBox = h("div.alert.error.hidden");
  const warningBox = h("div.alert.warn.hidden");
  return {
    nodes: [errorBox, warningBox],
    update(run) {
      errorBox.classList.toggle("hidden", !run.error);
      setText(errorBox, run.error ? `Error: ${run.error}` : "");
      const warnings = run.warnings || [];
      warningBox.classList.toggle("hidden", !warnings.length);
      setText(warningBox, warnings.join("\n"));
    },
  };
}
