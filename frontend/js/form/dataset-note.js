// Beside the dataset field: whether the chosen datasets' files are in the lab's data directory, will be
// downloaded on first use, or are missing (GET /api/datasets).

import { choiceNote } from "./choice-note.js";

/** "mnist — present", "cifar10 — downloads on first use (170 MB)": a dataset as GET /api/datasets reports it. */
function datasetState(state, name) {
  if (!state) return name;
  if (state.state === "present") return `${name} — present`;
  if (state.state === "generated") return `${name} — generated in memory`;
  if (state.state === "plugin") return `${name} — loaded by its plugin package`;
  const size = state.download_bytes ? ` (${Math.max(1, Math.round(state.download_bytes / 1e6))} MB)` : "";
  return state.download_on_first_use ? `${name} — downloads on first use${size}`
    : `${name} — missing: put its files in ${state.folder} (downloads are off)`;
}

/** The note under the dataset input: { node, paint() } (reads what the input holds). */
export function datasetNote(input, states) {
  return choiceNote(input, { datasetStatus: "" }, (name) => datasetState(states.find((d) => d.name === name), name),
    () => states.length > 0);
}
