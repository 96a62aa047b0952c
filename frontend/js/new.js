// A new experiment: a form generated from the run-config schema (components.schemas.RunConfig of
// /openapi.json). Every field, with its default and help; any field can be swept (a grid of values);
// presets fill it; a preview counts the runs and asks the API's dry run for their D×k memory;
// the server's 422 errors are shown beside the field they concern. The form's parts live in
// frontend/js/form/.

import { ApiError, api, openapi } from "./api.js";
import { debounce, h, toast } from "./dom.js";
import { datasetNote } from "./form/dataset-note.js";
import { experimentFields } from "./form/experiment-fields.js";
import { installedNote } from "./form/installed-note.js";
import { previewPanel } from "./form/preview.js";
import { SEED_FIELD, runConfigFields } from "./form/run-config-fields.js";
import { showServerErrors } from "./form/server-errors.js";
import { loadPresets, presetRequest } from "./presets.js";
import { runConfigSchema } from "./schema.js";

const EMPTY = { name: "", base: {}, grid: {}, seeds: [0], baseline: false };

class ExperimentForm {
  constructor(root, { schema, presets, searchProps, datasets, installed }) {
    this.closed = false;
    this.previewSequence = 0;
    this.update = debounce(() => this.refreshPreview(), 250);
    const onChange = () => this.update();
    this.config = runConfigFields(schema, onChange);
    this.experiment = experimentFields({ seedHelp: schema.byName[SEED_FIELD]?.description, searchProps, onChange, dInput: this.config.inputs.get("d") });
    this.datasets = datasetNote(this.config.inputs.get("dataset"), datasets);
    this.installedNotes = [installedNote(this.config.inputs.get("model"), installed.models || [], "model"),
      installedNote(this.config.inputs.get("dataset"), installed.datasets || [], "dataset")];
    this.generalError = h("div.alert.error.hidden", { role: "alert" });
    this.preview = previewPanel({ onSingle: () => this.submitSingle() });
    const presetBar = h("div.presets", h("span.muted", "Presets:"),
      presets.map((p) => h("button", { type: "button", title: p.title, dataset: { preset: p.id },
        onclick: async () => { const request = await presetRequest(p); if (request) this.apply(request); } }, p.label)),
      h("button.link", { type: "button", dataset: { action: "reset" }, onclick: () => this.apply(EMPTY) }, "reset to defaults"));
    root.append(h("form", { novalidate: true, onsubmit: (e) => { e.preventDefault(); this.submitExperiment(); } },
      h("div.page-head", h("h1", "New experiment"), h("div.actions", presetBar)),
      this.generalError,
      h("div.form-layout", h("div", this.experiment.node, this.config.nodes), h("div.side", this.preview.node))));
  }

  get errorTargets() {
    return { inputs: this.config.inputs, targets: this.experiment.targets, generalError: this.generalError };
  }

  clearErrors() {
    this.generalError.classList.add("hidden");
    this.generalError.textContent = "";
    for (const input of this.config.inputs.values()) input.clearError();
    for (const field of Object.values(this.experiment.targets)) field.clearError();
  }

  /** The request from the form; field errors found while parsing are shown (if asked) and returned. */
  buildRequest(showErrors = true) {
    const errors = [];
    const { base, grid } = this.config.read(errors);
    const { name, seeds, baseline, search } = this.experiment.read(errors);
    if (search) { delete base.d; delete grid.d; }      // the search chooses d
    if (showErrors) for (const [target, message] of errors) { target.clearError(); target.showError(message); }
    return { request: { name, base, grid, seeds, baseline, ...(search ? { search } : {}) }, errors };
  }

  async refreshPreview() {
    this.datasets.paint();
    for (const note of this.installedNotes) note.paint();
    const { request, errors } = this.buildRequest(false);
    this.preview.estimate(request);
    if (errors.length) return;
    const sequence = ++this.previewSequence;
    try {
      const plan = await api("/api/experiments", { method: "POST", query: { dry_run: "true" }, body: { ...request, name: request.name || "preview" } });
      if (sequence !== this.previewSequence || this.closed) return;
      this.clearErrors();
      this.preview.plan(plan);
    } catch (err) {
      if (sequence !== this.previewSequence || this.closed) return;
      if (err instanceof ApiError && err.status === 422) { this.clearErrors(); showServerErrors(err, request, this.errorTargets, false); }
    }
  }

  showGeneralError(message) {
    this.generalError.textContent = message;
    this.generalError.classList.remove("hidden");
  }

  async submitExperiment() {
    this.clearErrors();
    const { request, errors } = this.buildRequest(true);
    const nameField = this.experiment.targets.name;
    if (!request.name) { nameField.showError("give the experiment a name"); errors.push([nameField, ""]); }
    if (errors.length) { errors[0][0].node.scrollIntoView({ block: "center", behavior: "smooth" }); return; }
    this.preview.submit.disabled = true;
    try {
      const created = await api("/api/experiments", { method: "POST", body: request });
      toast(`Experiment #${created.id}: ${created.run_ids?.length ?? ""} runs queued`);
      location.hash = `#/experiments/${created.id}`;
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) showServerErrors(err, request, this.errorTargets);
      else { this.showGeneralError(err.message); this.generalError.scrollIntoView({ block: "center" }); }
    } finally {
      this.preview.submit.disabled = false;
    }
  }

  async submitSingle() {
    this.clearErrors();
    const { request, errors } = this.buildRequest(true);
    if (errors.length) return;
    try {
      const run = await api("/api/runs", { method: "POST", body: { ...request.base, seed: request.seeds[0] } });
      toast(`Run #${run.id} queued`);
      location.hash = `#/runs/${run.id}`;
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) showServerErrors(err, { grid: {} }, this.errorTargets);
      else this.showGeneralError(err.message);
    }
  }

  /** Fill the form with an experiment request (a preset, a clone, or the defaults). */
  apply(preset) {
    this.clearErrors();
    const { unknown, seed } = this.config.apply(preset);
    this.experiment.apply(preset, seed);
    if (unknown.length) toast(`The server's run config has no field ${unknown.join(", ")}: left out`, "error", 6000);
    this.refreshPreview();
  }

  /** What the URL asks to start from: a run or an experiment to clone, or a preset (with its run id). */
  async startFrom(query, presets) {
    try {
      if (query.get("clone_run")) {
        const run = await api(`/api/runs/${Number(query.get("clone_run"))}`);
        const { seed, ...base } = run.config || {};
        this.apply({ name: `run #${run.id} again`, base, grid: {}, seeds: [seed ?? 0], baseline: false });
      } else if (query.get("clone_experiment")) {
        const e = await api(`/api/experiments/${Number(query.get("clone_experiment"))}`);
        const b = e.baseline || {};
        this.apply({ name: `${e.name} (copy)`, base: e.base, grid: e.grid, seeds: e.seeds,
          baseline: b.mode === "individual" ? true : b.mode === "global" ? b.value : false, search: e.search });
      } else if (query.get("preset")) {
        const p = presets.find((x) => x.id === query.get("preset"));
        const request = p && await presetRequest(p, query.get("run_id"));
        if (request) this.apply(request);
      }
    } catch (err) {
      toast(`Could not load what to clone: ${err.message}`, "error", 6000);
    }
    this.refreshPreview();
  }

  destroy() {
    this.closed = true;
    this.update.cancel();
  }
}

export async function renderNewPage(root, query) {
  let schema;
  try {
    schema = await runConfigSchema();
  } catch (err) {
    root.append(h("div.alert.error", { text: `The form is generated from the server's run-config schema, which could not be read: ${err.message}` }));
    return null;
  }
  const [presets, doc, datasets, installed] = await Promise.all([
    loadPresets(),                                   // served by the API (idlab/presets.py); [] if it cannot be read
    openapi().catch(() => ({})),                     // the search's parameters, documented by the API
    api("/api/datasets").catch(() => []),
    api("/api/config/plugins").catch(() => ({})),    // built-in and plugin models and datasets, described
  ]);
  const searchProps = doc.components?.schemas?.SearchParameters?.properties || {};
  const form = new ExperimentForm(root, { schema, presets, searchProps, datasets, installed });
  await form.startFrom(query, presets);
  return () => form.destroy();
}
