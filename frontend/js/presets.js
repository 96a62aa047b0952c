// Presets of the experiment form: the paper presets the server serves (idlab/presets.py through
// GET /api/config/presets), each an experiment request {name, base, grid, seeds, baseline}. A template
// (a preset with `parameters`, e.g. P drawn from an earlier run's trained P) is filled by the server
// with the run id the researcher gives.

import { ApiError, api } from "./api.js";
import { toast } from "./dom.js";

let loaded = null;

/** The presets, fetched once per page load; [] (and a message) when the server cannot give them. */
export function loadPresets() {
  loaded ||= api("/api/config/presets").catch((err) => {
    loaded = null;
    toast(`The presets could not be read: ${err.message}`, "error", 6000);
    return [];
  });
  return loaded;
}

/** The preset's experiment request; a template asks for its run id (unless given) and is filled by the server. */
export async function presetRequest(preset, runId = null) {
  if (!preset.parameters?.length) return preset.request;
  const needed = preset.parameters.map((p) => `${p.name}: ${p.description}`).join("\n");
  const answer = runId ?? window.prompt(`${preset.label}\n\n${needed}`, "");
  if (answer === null || !String(answer).trim()) return null;
  try {
    const filled = await api(`/api/config/presets/${encodeURIComponent(preset.id)}`, { query: { run_id: String(answer).trim() } });
    return filled.request;
  } catch (err) {
    const message = err instanceof ApiError && err.fieldErrors.length ? err.fieldErrors.map((e) => e.msg).join("\n") : err.message;
    toast(`${preset.label}: ${message}`, "error", 8000);
    return null;
  }
}
