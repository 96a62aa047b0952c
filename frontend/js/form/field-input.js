// The inputs of the experiment form: a run-config field generated from its schema (plain, or swept:
// one run per value), and the experiment's own labelled inputs (name, seeds, baseline, search).

import { clear, fmtValue, h } from "../dom.js";
import { gridToText, parseGrid, parseValue, sameValue, valueToText } from "../schema.js";

/** One generated input: a run-config field, plain or swept. */
export class FieldInput {
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
export function withCode(text) {
  return String(text || "").split("`").map((part, i) => (i % 2 ? h("code", part) : part));
}

/** A plain labelled input of the experiment itself (name, seeds, baseline). */
export function plainField(name, label, control, help) {
  const error = h("div.error", { role: "alert" });
  const node = h("div.field", { dataset: { field: name } },
    h("div.field-head", h("label", { for: control.id }, name)), h("div.field-input", control), help ? h("div.help", withCode(help)) : null, error);
  return {
    node, control,
    showError(message) { node.classList.add("invalid"); error.textContent = error.textContent ? `${error.textContent}\n${message}` : message; },
    clearError() { node.classList.remove("invalid"); error.textContent = ""; },
  };
}
