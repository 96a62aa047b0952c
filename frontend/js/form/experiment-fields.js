// The experiment's own inputs: its name, seeds, baseline (none, individual, or a global accuracy) and
// how d is chosen — the d field (a value, or swept: a grid) or an automatic search for d_int90, whose
// parameters and their defaults come from the API's schema (SearchParameters).

import { h } from "../dom.js";
import { parseValue } from "../schema.js";
import { plainField } from "./field-input.js";

const SEARCH_PARAMETERS = ["d_start", "tolerance", "d_max", "max_rounds"];
const SEARCH_HELP = "A search doubles d from `d_start` until the mean accuracy over the seeds reaches 90% of the baseline, " +
  "then bisects on a log scale until hi / lo ≤ 1 + `tolerance`; each other swept field makes a group searched on its own, " +
  "and rounds are queued as the previous ones finish.";

function baselineInputs(onChange) {
  const mode = h("select", { id: "f-baseline" },
    h("option", { value: "none" }, "none"), h("option", { value: "individual" }, "individual: direct training per seed"),
    h("option", { value: "global" }, "global accuracy"));
  const value = h("input", { type: "text", id: "f-baseline-value", placeholder: "e.g. 1.0", style: { width: "90px" }, autocomplete: "off" });
  const field = plainField("baseline", "Baseline", mode,
    "d_int90 is the smallest d reaching 90% of the baseline: the experiment's own direct-training accuracy (individual) or a given number (global, e.g. 1.0 for MNIST).");
  field.node.querySelector(".field-input").append(value);
  const paint = () => value.classList.toggle("hidden", mode.value !== "global");
  mode.addEventListener("change", () => { paint(); field.clearError(); onChange(); });
  value.addEventListener("input", () => { field.clearError(); onChange(); });
  paint();
  return { field, mode, value, paint };
}

function searchInputs(searchProps, onChange, dInput) {
  const mode = h("select", { id: "f-d-mode" }, h("option", { value: "grid" }, "the d field (a value, or swept: a grid)"),
    h("option", { value: "search" }, "an automatic search for d_int90"));
  const inputs = Object.fromEntries(SEARCH_PARAMETERS.map((name) => [name,
    h("input", { type: "text", id: `f-search-${name}`, value: String(searchProps[name]?.default ?? ""), autocomplete: "off",
      inputMode: "decimal", title: searchProps[name]?.description || name, style: { width: "90px" } })]));
  const box = h("div.hidden", { dataset: { searchFields: "" }, style: { display: "flex", flexWrap: "wrap", gap: "6px 14px", marginTop: "6px" } },
    Object.entries(inputs).map(([name, input]) => h("label.inline", { title: input.title }, h("code", name), input)));
  const field = plainField("search", "d", mode, SEARCH_HELP);
  field.node.append(box);
  const paint = () => {
    const on = mode.value === "search";
    box.classList.toggle("hidden", !on);
    dInput?.node.classList.toggle("hidden", on);   // the search chooses d
  };
  mode.addEventListener("change", () => { paint(); field.clearError(); onChange(); });
  for (const input of Object.values(inputs)) input.addEventListener("input", () => { field.clearError(); onChange(); });
  return { field, mode, inputs, paint };
}

/**
 * The fields: { node, targets (name → field, for the server's errors), read(errors), apply(preset, seed) }.
 * `dInput`: the run-config d field, hidden while a search chooses d.
 */
export function experimentFields({ seedHelp, searchProps, onChange, dInput }) {
  const name = plainField("name", "Name", h("input", { type: "text", id: "f-name", placeholder: "e.g. mnist fc: linear vs rff", autocomplete: "off" }),
    "Shown in the experiments list and on exports.");
  const seeds = plainField("seeds", "Seeds", h("input", { type: "text", id: "f-seeds", value: "0", placeholder: "0, 1, 2", autocomplete: "off" }),
    `${seedHelp || "Seeds"} One run per seed at every grid point (the run-config field “seed”).`);
  name.control.addEventListener("input", () => { name.clearError(); onChange(); });
  seeds.control.addEventListener("input", () => { seeds.clearError(); onChange(); });
  const baseline = baselineInputs(onChange);
  const search = searchInputs(searchProps, onChange, dInput);
  const node = h("section.form-section", h("h2", "Experiment"), h("div.fields", name.node, seeds.node, baseline.field.node, search.field.node));

  /** name, seeds, baseline and search; parse errors are pushed to `errors` as [field, message]. */
  function read(errors) {
    let seedList = [];
    try {
      const parts = seeds.control.value.split(/[,\s]+/).filter(Boolean);
      if (!parts.length) throw new Error("give at least one seed");
      seedList = parts.map((p) => parseValue({ kind: "int", nullable: false }, p));
    } catch (err) { errors.push([seeds, err.message]); }
    let baselineValue = false;
    if (baseline.mode.value === "individual") baselineValue = true;
    else if (baseline.mode.value === "global") {
      const value = Number(baseline.value.value);
      if (!baseline.value.value.trim() || !Number.isFinite(value)) errors.push([baseline.field, "give the baseline accuracy, e.g. 1.0"]);
      else baselineValue = value;
    }
    let searchValue = null;
    if (search.mode.value === "search") {
      searchValue = {};
      for (const [key, input] of Object.entries(search.inputs)) {
        const value = Number(input.value);
        if (!input.value.trim() || !Number.isFinite(value)) errors.push([search.field, `${key}: give a number`]);
        else searchValue[key] = value;
      }
    }
    return { name: name.control.value.trim(), seeds: seedList, baseline: baselineValue, search: searchValue };
  }

  /** The preset's name, seeds (or the base's seed), baseline and search. */
  function apply(preset, seed) {
    if (seed !== undefined) seeds.control.value = String(seed);
    name.control.value = preset.name || "";
    if (preset.seeds) seeds.control.value = preset.seeds.join(", ");
    if (preset.baseline === true) baseline.mode.value = "individual";
    else if (typeof preset.baseline === "number") { baseline.mode.value = "global"; baseline.value.value = String(preset.baseline); }
    else baseline.mode.value = "none";
    baseline.paint();
    search.mode.value = preset.search ? "search" : "grid";
    for (const [key, input] of Object.entries(search.inputs)) input.value = String(preset.search?.[key] ?? searchProps[key]?.default ?? "");
    search.paint();
  }

  return { node, targets: { name, seeds, baseline: baseline.field, search: search.field }, read, apply };
}
