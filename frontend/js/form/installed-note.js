// Under the model and dataset fields: what the chosen name is — its description and, for a plugin, the
// package and version that provide it (GET /api/config/plugins lists the built-ins and the plugins).

import { choiceNote } from "./choice-note.js";

/** "residual_cnn — plugin idlab-plugin-example 0.1.0: Residual CNN: …"; a built-in: "fc — built in: …". */
function describeInstalled(entry, name) {
  if (!entry) return name;
  const origin = entry.source === "plugin" ? `plugin ${entry.package} ${entry.version ?? ""}`.trim() : "built in";
  const warnings = (entry.warnings || []).length ? ` (warning: ${entry.warnings.join("; ")})` : "";
  return `${name} — ${origin}: ${entry.description}${warnings}`;
}

/** The note under a model or dataset input: { node, paint() }; `installed` is the list GET /api/config/plugins gives. */
export function installedNote(input, installed, kind) {
  return choiceNote(input, { installedNote: kind },
    (name) => describeInstalled(installed.find((e) => e.name === name), name), () => installed.length > 0);
}
