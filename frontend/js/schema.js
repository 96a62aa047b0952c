// The run-config schema, read from the server's OpenAPI document (components.schemas.RunConfig).
// idlab.config.RunConfig is the single source of truth: the form, the filters and the config
// tables are generated from it, never from a list of fields kept here.

import { api, openapi } from "./api.js";

let cached = null;
let labSchemaPromise = null;

/** GET /api/config/schema, fetched once: the run config's JSON schema, the metric keys and the statuses. */
export function labSchema() {
  labSchemaPromise ||= api("/api/config/schema").catch((err) => { labSchemaPromise = null; throw err; });
  return labSchemaPromise;
}

export async function runConfigSchema() {
  if (cached) return cached;
  const doc = await openapi();
  const schemas = doc.components?.schemas || {};
  let schema = schemas.RunConfig;
  if (!schema) {
    // Any component that looks like the run config (defensive: the name is the contract).
    schema = Object.values(schemas).find((s) => s?.properties?.d && s?.properties?.projection && s?.properties?.augmentation);
  }
  if (!schema) throw new Error("the server's /openapi.json has no components.schemas.RunConfig");
  const resolve = (node) => {
    if (node && node.$ref) {
      const name = node.$ref.split("/").pop();
      return resolve({ ...(schemas[name] || schema.$defs?.[name] || {}), ...Object.fromEntries(Object.entries(node).filter(([k]) => k !== "$ref")) });
    }
    return node;
  };
  const fields = Object.entries(schema.properties || {}).map(([name, raw]) => describe(name, resolve(raw), resolve));
  cached = { schema, fields, byName: Object.fromEntries(fields.map((f) => [f.name, f])) };
  return cached;
}

/** One property as the UI needs it: its kind, default, constraints and help. */
function describe(name, prop, resolve) {
  let node = prop;
  let nullable = false;
  const variants = prop.anyOf || prop.oneOf;
  if (variants) {
    const concrete = variants.map(resolve).filter((v) => v.type !== "null");
    nullable = concrete.length < variants.length;
    node = { ...prop, ...(concrete[0] || {}) };
  }
  const field = {
    name,
    title: prop.title || name,
    description: prop.description || node.description || "",
    default: prop.default,
    nullable,
    enum: node.enum || (node.const !== undefined ? [node.const] : null),
    min: node.minimum, max: node.maximum,
    exclusiveMin: node.exclusiveMinimum, exclusiveMax: node.exclusiveMaximum,
    pattern: node.pattern || null,
    minItems: node.minItems, maxItems: node.maxItems,
  };
  if (field.enum) field.kind = "enum";
  else if (node.type === "boolean") field.kind = "bool";
  else if (node.type === "integer") field.kind = "int";
  else if (node.type === "number") field.kind = "number";
  else if (node.type === "array") {
    field.kind = "list";
    const items = node.prefixItems ? node.prefixItems.map(resolve) : [resolve(node.items || {})];
    field.itemKind = items[0]?.type === "integer" ? "int" : items[0]?.type === "number" ? "number" : "string";
    field.fixedLength = node.prefixItems ? node.prefixItems.length : null;
  } else field.kind = "string";
  return field;
}

// ---- values as text (the form's inputs) -----------------------------------------------------

export function valueToText(field, value) {
  if (value === null || value === undefined) return "";
  if (field.kind === "list") return Array.isArray(value) ? value.join(", ") : String(value);
  return String(value);
}

/** Parse one value of `field` from text; throws Error(message) a person can act on. */
export function parseValue(field, text) {
  const raw = String(text ?? "").trim();
  if (raw === "" || /^(null|none)$/i.test(raw)) {
    if (field.nullable) return null;
    if (raw === "") throw new Error("a value is required");
  }
  switch (field.kind) {
    case "int": {
      if (!/^[+-]?\d+$/.test(raw.replace(/_/g, ""))) throw new Error(`“${raw}” is not a whole number`);
      return Number(raw.replace(/_/g, ""));
    }
    case "number": {
      const value = Number(raw);
      if (!Number.isFinite(value)) throw new Error(`“${raw}” is not a number`);
      return value;
    }
    case "bool": {
      if (/^(true|1|yes|on)$/i.test(raw)) return true;
      if (/^(false|0|no|off)$/i.test(raw)) return false;
      throw new Error(`“${raw}” is not true or false`);
    }
    case "enum": {
      if (!field.enum.includes(raw)) throw new Error(`“${raw}” is not one of ${field.enum.join(", ")}`);
      return raw;
    }
    case "list": {
      const parts = raw.replace(/^\[|\]$/g, "").split(/[,\s]+/).filter(Boolean);
      const item = { kind: field.itemKind, nullable: false };
      const values = parts.map((p) => parseValue(item, p));
      if (field.fixedLength && values.length !== field.fixedLength) throw new Error(`give exactly ${field.fixedLength} values`);
      return values;
    }
    default:
      return raw;
  }
}

/** Parse a swept field's list of values: "100, 200, 300" (lists of lists: "200,200; 400"). */
export function parseGrid(field, text) {
  const raw = String(text ?? "").trim();
  if (!raw) throw new Error("give at least one value to sweep");
  const parts = field.kind === "list" ? raw.split(";") : raw.split(/[,;\s]+/);
  const values = parts.map((p) => p.trim()).filter(Boolean).map((p) => parseValue(field, p));
  if (!values.length) throw new Error("give at least one value to sweep");
  return values;
}

export function gridToText(field, values) {
  if (field.kind === "list") return values.map((v) => (Array.isArray(v) ? v.join(", ") : String(v))).join("; ");
  return values.map((v) => (v === null ? "null" : String(v))).join(", ");
}

export function sameValue(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}
