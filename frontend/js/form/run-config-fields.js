// The run-config fields of the experiment form, generated from the schema and laid out in sections; each can
// be swept. Read into an experiment request's `base` (values that differ from the default) and `grid`.

import { h } from "../dom.js";
import { sameValue } from "../schema.js";
import { FieldInput } from "./field-input.js";

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
export const SEED_FIELD = "seed";   // swept by the experiment's `seeds` list, not by the grid
// Direct training ignores these: a baseline run is not repeated for each of their values.
const SUBSPACE_FIELDS = new Set([...SECTIONS[1][1], ...SECTIONS[2][1]]);

/** The direct-training baseline runs an individual baseline adds: one per seed and per value of the non-subspace grid fields. */
export function baselineRunCount(request) {
  if (request.baseline !== true) return 0;
  return Object.entries(request.grid).filter(([k]) => !SUBSPACE_FIELDS.has(k)).reduce((n, [, v]) => n * v.length, 1)
    * Math.max(1, request.seeds.length);
}

/** The fields: { inputs (name → FieldInput), nodes (the sections), read(errors) → { base, grid }, apply(preset) }. */
export function runConfigFields(schema, onChange) {
  const inputs = new Map();
  const placed = new Set([SEED_FIELD]);
  const nodes = [];
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
    nodes.push(h("section.form-section", h("h2", title), box));
  };
  for (const [title, names] of SECTIONS) makeSection(title, names);
  makeSection("Other options", schema.fields.map((f) => f.name));

  /** base and grid; each field's parse error is pushed to `errors` as [input, message]. */
  function read(errors) {
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
    return { base, grid };
  }

  /** Every field back to its default, then the preset's base and grid; → { unknown: names the schema lacks, seed }. */
  function apply(preset) {
    const unknown = [];
    let seed;
    for (const input of inputs.values()) input.set(input.field.default);
    for (const [name, value] of Object.entries(preset.base || {})) {
      if (name === SEED_FIELD) { seed = value; continue; }
      const input = inputs.get(name);
      if (input) input.set(value); else unknown.push(name);
    }
    for (const [name, values] of Object.entries(preset.grid || {})) {
      const input = inputs.get(name);
      if (input) input.setSwept(true, values); else unknown.push(name);
    }
    return { unknown, seed };
  }

  return { inputs, nodes, read, apply };
}
