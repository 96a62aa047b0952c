// A new experiment: a form generated from the run-config schema (components.schemas.RunConfig of
// /openapi.json). Every field, with its default and help; any field can be swept (a grid of values);
// presets fill it; a preview counts the runs and asks the API's dry run for their D×k memory;
// the server's 422 errors are shown beside the field they concern.

import { ApiError, api, openapi } from "./api.js";
import { clear, debounce, fmtBytes, fmtInt, fmtValue, h, setText, toast } from "./dom.js";
import { loadPresets, presetRequest } from "./presets.js";
import { gridToText, parseGrid, parseValue, runConfigSchema, sameValue, valueToText } from "./schema.js";

// Layout only: which section a field is shown in. Fields the schema has and this map lacks are
// shown under "Other options", so a new RunConfig field appears in the form without a change here.
const SECTIONS = [
  ["Task", ["dataset", "model", "fc_widths", "method", "input_scaling", "train_size", "test_size", "theta0_init", "bias_init"]],
  ["Subspace", ["projection", "augmentation", "d", "p_init", "p_scale", "normalize_p", "sparse_scope", "from_run_mean",
    "train_p", "theta_d_init", "theta_d_std", "use_theta0"]],
  ["Augmentation options", ["power_orders", "power_coefs", "rff_features", "rff_scale", "rff_amplitude", "rff_per_tensor",
    "rff_centered", "train_rff_b"]],
  ["Training", ["epochs", "batch_size", "optimizer", "lr", "adam_betas", "momentum", "lr_decay", "weight_decay",
    "weight_decay_scope", "early_stopping_patience", "early_stopping_metric", "on_divergence", "max_lr_reductions"]],
  ["Execution", ["log_every", "device"]],
];
const SEED_FIELD = "seed";   // swept by the experiment's `seeds` list, not by the grid

/** One generated input: a run-config field, plain or swept. */
class FieldInput {
  constructor(field, onChange) {
    this.field = field;
    this.onChange = onChange;
    this.swept = false;
    this.sweepBox = h("input", { type: "checkbox", title: "Sweep this field: one run per value" });
    this.sweepBox.addEventListener("change", () => this.setSwept(this.sweepBox.checked));
    this.inputBox = h("div.field-input");
    this.error = h("div.error", { role: "alert" });
    this.defaultNote = h("span.default", `default: ${field.default === undefined ? "–" : fmtValue(field.default)}`);
    const id = `f-${field.name}`;
    this.id = id;
    this.node = h("div.field", { dataset: { field: field.name } },
      h("div.field-head",
        h("label", { for: id, title: field.title }, field.name),
        h("label.sweep", { title: "Sweep: one run per value" }, this.sweepBox, "sweep")),
      this.inputBox,
      h("div.help", withCode(field.description), " ", this.defaultNote),
      this.error);
    this.value = field.default;
    this.gridValues = null;
    this.render();
  }

  setSwept(swept, values = null) {
    if (values === null) this.capture();      // keep what was typed
    if (swept) this.gridValues = values ?? (this.gridValues?.length ? this.gridValues : [this.value]);
    else if (this.gridValues?.length) this.value = this.gridValues[0];
    this.swept = swept;
    this.sweepBox.checked = swept;
    this.render();
    this.onChange();
  }

  set(value) {
    this.gridValues = null;
    this.swept = false;
    this.sweepBox.checked = false;
    this.value = value;
    this.render();
  }

  render() {
    const f = this.field;
    clear(this.inputBox);
    this.node.classList.toggle("swept", this.swept);
    const changed = () => { this.clearError(); this.onChange(); };
    if (f.kind === "enum" || f.kind === "bool") {
      const options = f.kind === "bool" ? [false, true] : f.enum;
      if (this.swept) {
        const chosen = new Set((this.gridValues || []).map((v) => JSON.stringify(v)));
        this.checks = options.map((option) => {
          const box = h("input", { type: "checkbox", value: JSON.stringify(option), checked: chosen.has(JSON.stringify(option)) });
          box.addEventListener("change", changed);
          return [option, box];
        });
        this.inputBox.append(h("div.choices", { id: this.id }, this.checks.map(([o, box]) => h("label.inline", box, String(o)))));
      } else if (f.kind === "bool") {
        this.control = h("input", { type: "checkbox", id: this.id, checked: Boolean(this.value) });
        this.control.addEventListener("change", changed);
        this.inputBox.append(h("label.inline", this.control, h("span.muted", "enabled")));
      } else {
        this.control = h("select", { id: this.id }, f.enum.map((o) => h("option", { value: o, selected: o === this.value }, o)));
        this.control.addEventListener("change", changed);
        this.inputBox.append(this.control);
      }
      return;
    }
    const text = this.swept ? gridToText(f, this.gridValues || []) : valueToText(f, this.value);
    const placeholder = this.swept
      ? (f.kind === "list" ? "lists separated by ;  e.g. 200, 200; 400" : "values separated by commas, e.g. 100, 200, 300")
      : (f.nullable ? "none" : f.kind === "list" ? "comma-separated" : "");
    this.control = h("input", { type: "text", id: this.id, value: text, placeholder, spellcheck: "false", autocomplete: "off",
      inputMode: f.kind === "int" || f.kind === "number" ? "decimal" : undefined });
    this.control.addEventListener("input", changed);
    this.inputBox.append(this.control);
  }

  /** {value} or {values} (swept); throws Error with a message for this field. */
  read() {
    const f = this.field;
    if (this.swept) {
      if (this.checks) {
        const values = this.checks.filter(([, box]) => box.checked).map(([o]) => o);
        if (!values.length) throw new Error("tick at least one value to sweep");
        return { values };
      }
      return { values: parseGrid(f, this.control.value) };
    }
    if (f.kind === "bool") return { value: this.control.checked };
    if (f.kind === "enum") return { value: this.control.value };
    return { value: parseValue(f, this.control.value) };
  }

  /** Snapshot the controls into value/gridValues (before re-rendering). */
  capture() {
    try {
      const r = this.read();
      if (this.swept) this.gridValues = r.values; else this.value = r.value;
    } catch { /* keep the last good value */ }
  }

  showError(message) {
    this.node.classList.add("invalid");
    this.error.textContent = this.error.textContent ? `${this.error.textContent}\n${message}` : message;
  }

  clearError() {
    this.node.classList.remove("invalid");
    this.error.textContent = "";
  }

  isModified() {
    if (this.swept) return true;
    try { return !sameValue(this.read().value, this.field.default); } catch { return true; }
  }
}

/** Text with `code` spans, as the schema's descriptions are written. */
function withCode(text) {
  return String(text || "").split("`").map((part, i) => (i % 2 ? h("code", part) : part));
}

/** "mnist — present", "cifar10 — downloads on first use (170 MB)": a dataset as GET /api/datasets reports it. */
function datasetState(state, name) {
  if (!state) return name;
  if (state.state === "present") return `${name} — present`;
  if (state.state === "generated") return `${name} — generated in memory`;
  const size = state.download_bytes ? ` (${Math.max(1, Math.round(state.download_bytes / 1e6))} MB)` : "";
  return state.download_on_first_use ? `${name} — downloads on first use${size}`
    : `${name} — missing: put its files in ${state.folder} (downloads are off)`;
}

/** A plain labelled input of the experiment itself (name, seeds, baseline). */
function plainField(name, label, control, help) {
  const error = h("div.error", { role: "alert" });
  const node = h("div.field", { dataset: { field: name } },
    h("div.field-head", h("label", { for: control.id }, name)), h("div.field-input", control), help ? h("div.help", withCode(help)) : null, error);
  return {
    node, control,
    showError(message) { node.classList.add("invalid"); error.textContent = error.textContent ? `${error.textContent}\n${message}` : message; },
    clearError() { node.classList.remove("invalid"); error.textContent = ""; },
  };
}

export async function renderNewPage(root, query) {
  let schema;
  try {
    schema = await runConfigSchema();
  } catch (err) {
    root.append(h("div.alert.error", { text: `The form is generated from the server's run-config schema, which could not be read: ${err.message}` }));
    return null;
  }
  const PRESETS = await loadPresets();   // served by the API (idlab/presets.py); [] if it cannot be read
  const inputs = new Map();
  let closed = false;

  const update = debounce(() => refreshPreview(), 250);
  const onChange = () => { update(); };

  // ---- experiment-level fields ----
  const nameField = plainField("name", "Name", h("input", { type: "text", id: "f-name", placeholder: "e.g. mnist fc: linear vs rff", autocomplete: "off" }),
    "Shown in the experiments list and on exports.");
  const seedSchema = schema.byName[SEED_FIELD];
  const seedsField = plainField("seeds", "Seeds", h("input", { type: "text", id: "f-seeds", value: "0", placeholder: "0, 1, 2", autocomplete: "off" }),
    `${seedSchema?.description || "Seeds"} One run per seed at every grid point (the run-config field “seed”).`);
  const baselineMode = h("select", { id: "f-baseline" },
    h("option", { value: "none" }, "none"), h("option", { value: "individual" }, "individual: direct training per seed"),
    h("option", { value: "global" }, "global accuracy"));
  const baselineValue = h("input", { type: "text", id: "f-baseline-value", placeholder: "e.g. 1.0", style: { width: "90px" }, autocomplete: "off" });
  const baselineField = plainField("baseline", "Baseline", baselineMode,
    "d_int90 is the smallest d reaching 90% of the baseline: the experiment's own direct-training accuracy (individual) or a given number (global, e.g. 1.0 for MNIST).");
  baselineField.node.querySelector(".field-input").append(baselineValue);
  const paintBaseline = () => baselineValue.classList.toggle("hidden", baselineMode.value !== "global");
  baselineMode.addEventListener("change", () => { paintBaseline(); baselineField.clearError(); onChange(); });
  baselineValue.addEventListener("input", () => { baselineField.clearError(); onChange(); });
  nameField.control.addEventListener("input", () => { nameField.clearError(); onChange(); });
  seedsField.control.addEventListener("input", () => { seedsField.clearError(); onChange(); });
  paintBaseline();
  // ---- d: a grid (the d field, swept) or an automatic search (its parameters documented by the API) ----
  const searchProps = (await openapi().catch(() => ({}))).components?.schemas?.SearchParameters?.properties || {};
  const dMode = h("select", { id: "f-d-mode" }, h("option", { value: "grid" }, "the d field (a value, or swept: a grid)"),
    h("option", { value: "search" }, "an automatic search for d_int90"));
  const searchInputs = Object.fromEntries(["d_start", "tolerance", "d_max", "max_rounds"].map((name) => [name,
    h("input", { type: "text", id: `f-search-${name}`, value: String(searchProps[name]?.default ?? ""), autocomplete: "off",
      inputMode: "decimal", title: searchProps[name]?.description || name, style: { width: "90px" } })]));
  const searchBox = h("div.hidden", { dataset: { searchFields: "" }, style: { display: "flex", flexWrap: "wrap", gap: "6px 14px", marginTop: "6px" } },
    Object.entries(searchInputs).map(([name, input]) => h("label.inline", { title: input.title }, h("code", name), input)));
  const searchField = plainField("search", "d", dMode,
    "A search doubles d from `d_start` until the mean accuracy over the seeds reaches 90% of the baseline, then bisects on a log scale until hi / lo ≤ 1 + `tolerance`; each other swept field makes a group searched on its own, and rounds are queued as the previous ones finish.");
  searchField.node.append(searchBox);
  const paintSearch = () => {
    const on = dMode.value === "search";
    searchBox.classList.toggle("hidden", !on);
    inputs.get("d")?.node.classList.toggle("hidden", on);   // the search chooses d
  };
  dMode.addEventListener("change", () => { paintSearch(); searchField.clearError(); onChange(); });
  for (const input of Object.values(searchInputs)) input.addEventListener("input", () => { searchField.clearError(); onChange(); });
  const plain = { name: nameField, seeds: seedsField, baseline: baselineField, search: searchField };

  // ---- run-config fields, generated ----
  const placed = new Set([SEED_FIELD]);
  const sectionNodes = [];
  const makeSection = (title, names) => {
    const fields = names.map((n) => schema.byName[n]).filter(Boolean).filter((f) => !placed.has(f.name));
    if (!fields.length) return;
    const box = h("div.fields");
    for (const f of fields) {
      placed.add(f.name);
      const input = new FieldInput(f, onChange);
      inputs.set(f.name, input);
      box.append(input.node);
    }
    sectionNodes.push(h("section.form-section", h("h2", title), box));
  };
  for (const [title, names] of SECTIONS) makeSection(title, names);
  makeSection("Other options", schema.fields.map((f) => f.name));

  // ---- beside the dataset: whether its files are in the lab's data directory (GET /api/datasets) ----
  const datasetNote = h("div.help", { dataset: { datasetStatus: "" } });
  inputs.get("dataset")?.node.append(datasetNote);
  const datasetStates = await api("/api/datasets").catch(() => []);
  function paintDatasets() {
    const input = inputs.get("dataset");
    if (!input || !datasetStates.length) return;
    let chosen = [];
    try { const r = input.read(); chosen = input.swept ? r.values : [r.value]; } catch { /* nothing chosen yet */ }
    setText(datasetNote, chosen.map((name) => datasetState(datasetStates.find((d) => d.name === name), name)).join(" · "));
  }
  inputs.get("dataset")?.node.addEventListener("change", paintDatasets);
  paintDatasets();

  // ---- preview and submit ----
  const generalError = h("div.alert.error.hidden", { role: "alert" });
  const previewCount = h("div.big", { dataset: { preview: "runs" } }, "–");
  const previewDetail = h("div.muted");
  const previewTable = h("table.kv");
  const requestJson = h("pre");
  const submit = h("button.primary", { type: "submit", dataset: { action: "submit" } }, "Queue experiment");
  const single = h("button", { type: "button", title: "Queue one run with this config (no grid, one seed)", onclick: () => submitSingle() }, "Queue one run");
  const preview = h("div.panel.preview", { dataset: { section: "preview" } },
    h("h2", "Preview"), previewCount, previewDetail, previewTable,
    h("details", h("summary.muted", "Request"), requestJson),
    h("div.submit-row", submit, single));

  const presetBar = h("div.presets", h("span.muted", "Presets:"),
    PRESETS.map((p) => h("button", { type: "button", title: p.title, dataset: { preset: p.id }, onclick: async () => { const request = await presetRequest(p); if (request) applyPreset(request); } }, p.label)),
    h("button.link", { type: "button", dataset: { action: "reset" }, onclick: () => applyPreset({ name: "", base: {}, grid: {}, seeds: [0], baseline: false }) }, "reset to defaults"));

  const form = h("form", { novalidate: true, onsubmit: (e) => { e.preventDefault(); submitExperiment(); } },
    h("div.page-head", h("h1", "New experiment"), h("div.actions", presetBar)),
    generalError,
    h("div.form-layout",
      h("div",
        h("section.form-section", h("h2", "Experiment"), h("div.fields", nameField.node, seedsField.node, baselineField.node, searchField.node)),
        sectionNodes),
      h("div.side", preview)));
  root.append(form);

  function clearErrors() {
    generalError.classList.add("hidden");
    generalError.textContent = "";
    for (const input of inputs.values()) input.clearError();
    for (const p of Object.values(plain)) p.clearError();
  }

  /** The request from the form; field errors found while parsing are shown and returned. */
  function buildRequest(showErrors = true) {
    const errors = [];
    const base = {}, grid = {};
    for (const [name, input] of inputs) {
      try {
        const r = input.read();
        if (input.swept) grid[name] = r.values;
        else if (!sameValue(r.value, input.field.default)) base[name] = r.value;
        input.node.classList.toggle("modified", input.isModified() && !input.swept);
      } catch (err) {
        errors.push([input, err.message]);
      }
    }
    let seeds = [];
    try {
      const parts = seedsField.control.value.split(/[,\s]+/).filter(Boolean);
      if (!parts.length) throw new Error("give at least one seed");
      seeds = parts.map((p) => parseValue({ kind: "int", nullable: false }, p));
    } catch (err) { errors.push([seedsField, err.message]); }
    let baseline = false;
    if (baselineMode.value === "individual") baseline = true;
    else if (baselineMode.value === "global") {
      const value = Number(baselineValue.value);
      if (!baselineValue.value.trim() || !Number.isFinite(value)) errors.push([baselineField, "give the baseline accuracy, e.g. 1.0"]);
      else baseline = value;
    }
    let search = null;
    if (dMode.value === "search") {
      delete base.d; delete grid.d;                    // the search chooses d
      search = {};
      for (const [name, input] of Object.entries(searchInputs)) {
        const value = Number(input.value);
        if (!input.value.trim() || !Number.isFinite(value)) errors.push([searchField, `${name}: give a number`]);
        else search[name] = value;
      }
    }
    if (showErrors) for (const [target, message] of errors) { target.clearError(); target.showError(message); }
    return { request: { name: nameField.control.value.trim(), base, grid, seeds, baseline, ...(search ? { search } : {}) }, errors };
  }

  let previewSequence = 0;
  async function refreshPreview() {
    paintDatasets();
    const { request, errors } = buildRequest(false);
    requestJson.textContent = JSON.stringify(request, null, 2);
    const gridPoints = Object.values(request.grid).reduce((n, v) => n * v.length, 1);
    const members = gridPoints * Math.max(1, request.seeds.length);
    let baselines = 0;
    if (request.baseline === true) {
      // Direct training ignores the subspace fields: one baseline per seed and per value of the others.
      const subspace = new Set([...SECTIONS[1][1], ...SECTIONS[2][1]]);
      baselines = Object.entries(request.grid).filter(([k]) => !subspace.has(k)).reduce((n, [, v]) => n * v.length, 1) * Math.max(1, request.seeds.length);
    }
    setText(previewCount, `${fmtInt(members + baselines)} run${members + baselines === 1 ? "" : "s"}`);
    const gridDesc = Object.entries(request.grid).map(([k, v]) => `${v.length} ${k}`).join(" × ");
    setText(previewDetail, `${gridDesc ? `${gridDesc} × ` : ""}${request.seeds.length} seed${request.seeds.length === 1 ? "" : "s"}${baselines ? ` + ${baselines} baseline run${baselines === 1 ? "" : "s"}` : ""}`);
    if (request.search) setText(previewDetail, `round 1 of the search: ${previewDetail.textContent}; later rounds follow as rounds finish`);
    single.disabled = Object.keys(request.grid).length > 0 || request.seeds.length !== 1 || request.baseline !== false || Boolean(request.search);
    const rows = [["grid points", fmtInt(gridPoints)], ["grid runs", fmtInt(members)], ["baseline runs", request.baseline === true ? fmtInt(baselines) : "–"]];
    paintRows(rows);
    if (errors.length) return;
    const sequence = ++previewSequence;
    try {
      const plan = await api("/api/experiments", { method: "POST", query: { dry_run: "true" }, body: { ...request, name: request.name || "preview" } });
      if (sequence !== previewSequence || closed) return;
      clearErrors();
      paintPlan(plan);
    } catch (err) {
      if (sequence !== previewSequence || closed) return;
      if (err instanceof ApiError && err.status === 422) { clearErrors(); showServerErrors(err, request, false); }
    }
  }

  function paintRows(rows) {
    previewTable.replaceChildren(h("tbody", rows.map(([k, v]) => h("tr", h("td", k), h("td.num", v)))));
  }

  /** The dry run's answer: counts, and D×k memory of the dense runs. Tolerant of the exact shape. */
  function paintPlan(plan) {
    const runs = plan.runs || [];
    const count = plan.run_count ?? runs.length ?? plan.run_ids?.length;
    const baselines = plan.baseline_count ?? runs.filter((r) => r.role === "baseline").length;
    if (typeof count === "number") setText(previewCount, `${fmtInt(count)} run${count === 1 ? "" : "s"}`);
    const dense = runs.filter((r) => (r.config?.projection ?? r.projection) === "dense" && (r.config?.method ?? r.method) !== "direct");
    const bytesOf = (r) => r.dense_p_bytes ?? (r.D && r.k ? r.D * r.k * 4 : 0);
    const total = plan.total_dense_p_bytes ?? plan.dense_p_bytes ?? dense.reduce((n, r) => n + bytesOf(r), 0);
    const largest = plan.max_dense_p_bytes ?? dense.reduce((m, r) => Math.max(m, bytesOf(r)), 0);
    const sizes = runs.filter((r) => r.D).map((r) => r.D);
    const rows = [["runs", fmtInt(count)], ["baseline runs", fmtInt(baselines)]];
    if (sizes.length) rows.push(["D", [...new Set(sizes)].map(fmtInt).join(", ")]);
    const ks = runs.filter((r) => r.k && r.role !== "baseline").map((r) => r.k);
    if (ks.length) rows.push(["k", `${fmtInt(Math.min(...ks))} – ${fmtInt(Math.max(...ks))}`]);
    rows.push(["dense P, all runs (D×k×4 B)", fmtBytes(total)], ["largest dense P", fmtBytes(largest)]);
    if (plan.kind === "search") rows.splice(2, 0, ["groups searched", fmtInt(plan.group_count)], ["runs at most (all rounds)", fmtInt(plan.max_run_count)]);
    for (const w of plan.warnings || []) rows.push(["warning", w]);
    paintRows(rows);
  }

  /** 422 details → the field each concerns (loc: body, base|grid|seeds|name|baseline, field, index). */
  function showServerErrors(err, request, scroll = true) {
    const general = [];
    let first = null;
    for (const e of err.fieldErrors) {
      const loc = (e.loc || []).filter((p) => p !== "body");
      let target = null, message = e.msg || "invalid";
      const point = e.ctx?.grid_point ? ` (at ${Object.entries(e.ctx.grid_point).map(([k, v]) => `${k}=${fmtValue(v)}`).join(", ")})` : "";
      if (loc[0] === "base" && loc.length > 1) target = inputs.get(String(loc[1]));
      else if (loc[0] === "grid" && loc.length > 1) {
        target = inputs.get(String(loc[1]));
        if (typeof loc[2] === "number") {
          const values = request?.grid?.[loc[1]];
          message = `value ${loc[2] + 1}${values ? ` (${fmtValue(values[loc[2]])})` : ""}: ${message}`;
        }
      } else if (loc[0] === "seeds") target = seedsField;
      else if (loc[0] === "name") target = nameField;
      else if (loc[0] === "baseline") target = baselineField;
      else if (loc[0] === "search") { target = searchField; if (loc.length > 1) message = `${loc[1]}: ${message}`; }
      else if (loc.length === 1 && inputs.has(String(loc[0]))) target = inputs.get(String(loc[0]));   // POST /api/runs
      else if (loc[0] === SEED_FIELD) target = seedsField;
      if (target) {
        target.showError(message + (loc[0] === "grid" ? "" : point));
        first ||= target;
      } else general.push(`${loc.join(".") || "request"}: ${message}`);
    }
    if (general.length) {
      generalError.textContent = general.join("\n");
      generalError.classList.remove("hidden");
    }
    if (scroll) (first?.node || generalError).scrollIntoView({ block: "center", behavior: "smooth" });
  }

  async function submitExperiment() {
    clearErrors();
    const { request, errors } = buildRequest(true);
    if (!request.name) { nameField.showError("give the experiment a name"); errors.push([nameField, ""]); }
    if (errors.length) { (errors[0][0].node).scrollIntoView({ block: "center", behavior: "smooth" }); return; }
    submit.disabled = true;
    try {
      const created = await api("/api/experiments", { method: "POST", body: request });
      toast(`Experiment #${created.id}: ${created.run_ids?.length ?? ""} runs queued`);
      location.hash = `#/experiments/${created.id}`;
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) showServerErrors(err, request);
      else { generalError.textContent = err.message; generalError.classList.remove("hidden"); generalError.scrollIntoView({ block: "center" }); }
    } finally {
      submit.disabled = false;
    }
  }

  async function submitSingle() {
    clearErrors();
    const { request, errors } = buildRequest(true);
    if (errors.length) return;
    const config = { ...request.base, seed: request.seeds[0] };
    try {
      const run = await api("/api/runs", { method: "POST", body: config });
      toast(`Run #${run.id} queued`);
      location.hash = `#/runs/${run.id}`;
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) showServerErrors(err, { grid: {} });
      else { generalError.textContent = err.message; generalError.classList.remove("hidden"); }
    }
  }

  function applyPreset(preset) {
    clearErrors();
    const unknown = [];
    for (const input of inputs.values()) input.set(input.field.default);
    for (const [name, value] of Object.entries(preset.base || {})) {
      if (name === SEED_FIELD) { seedsField.control.value = String(value); continue; }
      const input = inputs.get(name);
      if (input) input.set(value); else unknown.push(name);
    }
    for (const [name, values] of Object.entries(preset.grid || {})) {
      const input = inputs.get(name);
      if (input) input.setSwept(true, values); else unknown.push(name);
    }
    nameField.control.value = preset.name || "";
    if (preset.seeds) seedsField.control.value = preset.seeds.join(", ");
    if (preset.baseline === true) baselineMode.value = "individual";
    else if (typeof preset.baseline === "number") { baselineMode.value = "global"; baselineValue.value = String(preset.baseline); }
    else baselineMode.value = "none";
    paintBaseline();
    dMode.value = preset.search ? "search" : "grid";
    for (const [name, input] of Object.entries(searchInputs)) input.value = String(preset.search?.[name] ?? searchProps[name]?.default ?? "");
    paintSearch();
    if (unknown.length) toast(`The server's run config has no field ${unknown.join(", ")}: left out`, "error", 6000);
    refreshPreview();
  }

  // ---- start: a clone, or the defaults ----
  try {
    if (query.get("clone_run")) {
      const run = await api(`/api/runs/${Number(query.get("clone_run"))}`);
      const { seed, ...base } = run.config || {};
      applyPreset({ name: `run #${run.id} again`, base, grid: {}, seeds: [seed ?? 0], baseline: false });
    } else if (query.get("clone_experiment")) {
      const e = await api(`/api/experiments/${Number(query.get("clone_experiment"))}`);
      const b = e.baseline || {};
      applyPreset({ name: `${e.name} (copy)`, base: e.base, grid: e.grid, seeds: e.seeds,
        baseline: b.mode === "individual" ? true : b.mode === "global" ? b.value : false, search: e.search });
    } else if (query.get("preset")) {
      const p = PRESETS.find((x) => x.id === query.get("preset"));
      const request = p && await presetRequest(p, query.get("run_id"));
      if (request) applyPreset(request);
    }
  } catch (err) {
    toast(`Could not load what to clone: ${err.message}`, "error", 6000);
  }
  refreshPreview();
  return () => { closed = true; update.cancel(); };
}
