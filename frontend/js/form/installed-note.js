// Under the model and dataset fields: what the chosen name is — its description and, for a plugin, the
// package and version that provide it (GET /api/config/plugins lists the built-ins and the plugins).

import { h, setText } from "../dom.js";

/** "residual_cnn — plugin idlab-plugin-example 0.1.0: Residual CNN: …"; a built-in: "fc — built in: …". */
function describeInstalled(entry, name) {
  if (!entry) return name;
  const origin = entry.source === "plugin" ? `plugin ${entry.package} ${entry.version ?? ""}`.trim() : "built in";
  const warnings = (entry.warnings || []).length ? ` (warning: ${entry.warnings.join("; ")})` : "";
  return `${name} — ${origin}: ${entry.description}${warnings}`;
}

/** The note under a model or dataset input: { node, paint() }; `installed` is the list GET /api/config/plugins gives. */
export function installedNote(input, installed, kind) {
  const node = h("div.help", { dataset: { installedNote: kind } });
  function paint() {
    if (!input || !installed.length) return;
    let chosen = [];
    try { const r = input.read(); chosen = input.swept ? r.values : [r.value]; } catch { /* nothing chosen yet */ }
    setText(node, chosen.map((name) => describeInstalled(installed.find((e) => e.name === name), name)).join(" · "));
  }
  if (input) {
    input.node.append(node);
    input.node.addEventListener("change", paint);
  }
  paint();
  return { node, paint };
}
