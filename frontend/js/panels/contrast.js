// Does group a beat group b? Pick a grid field and two of its values: Δ = a − b against d with Welch's
// interval as a band and the zero line, a table per d (means, Δ, interval, one-sided p, Holm's p,
// equivalence within an optional margin, the seed-matched check), and one plain sentence per d.
// The numbers are GET /api/experiments/{id}/contrast's (docs/statistics.md).

import { api } from "../api.js";
import { config as plotConfig, emptyChart, layout, purge, react } from "../charts.js";
import { fmtNum, h, setText } from "../dom.js";

const COLUMNS = ["d", "n a / b", "mean a", "mean b", "Δ = a − b", "interval", "p (a > b)", "Holm p", "equivalent", "paired Δ"];

const signed = (x) => (x === null || x === undefined ? "–" : `${x >= 0 ? "+" : "−"}${fmtNum(Math.abs(x), 3)}`);
const pText = (p) => (p === null || p === undefined ? "–" : p < 0.001 ? "< 0.001" : fmtNum(p, 2));
const ciText = (ci) => (ci ? `[${signed(ci[0])}, ${signed(ci[1])}]` : "–");

/** "rff − linear at d = 100: +0.012 [−0.004, +0.028], p = 0.07, Holm 0.14: not shown to differ; …". */
export function contrastSentence(row, names, margin, alpha) {
  const head = `${names.a} − ${names.b} at d = ${row.d}: ${signed(row.delta)}`;
  if (row.p_value === null || row.p_value === undefined) return `${head} (${row.reason || "no test"})`;
  const verdict = row.p_adjusted < alpha ? `${names.a} is higher` : "not shown to differ";
  const equivalence = margin === null || margin === undefined ? ""
    : row.equivalent ? `; equivalent within ±${margin}` : `; not shown equivalent within ±${margin}`;
  return `${head} ${ciText(row.ci)}, p = ${pText(row.p_value)}, Holm ${pText(row.p_adjusted)}: ${verdict}${equivalence}`;
}

function contrastRow(row) {
  const paired = row.paired || {};
  return h("tr", { dataset: { d: row.d } },
    h("td.num", String(row.d)), h("td.num", `${row.n_a} / ${row.n_b}`), h("td.num", fmtNum(row.mean_a, 4)),
    h("td.num", fmtNum(row.mean_b, 4)), h("td.num", signed(row.delta)), h("td.num", ciText(row.ci)),
    h("td.num", pText(row.p_value)), h("td.num", pText(row.p_adjusted)),
    h("td", row.equivalent === null || row.equivalent === undefined ? "–" : row.equivalent ? "yes" : "no"),
    h("td.num", { title: `${paired.pairs ?? 0} seed pairs, p = ${pText(paired.p_value)}` }, signed(paired.delta)));
}

/** The chart: Δ per d with its interval as a band, one trace per stratum, and the zero line. */
function contrastFigure(result) {
  const traces = [];
  for (const stratum of result.strata) {
    const rows = stratum.rows.filter((r) => r.delta !== null);
    const label = result.fields.map((f) => `${f}=${stratum[f]}`).join(", ") || `${result.a} − ${result.b}`;
    const x = rows.map((r) => r.d), lo = rows.map((r) => r.ci?.[0] ?? r.delta), hi = rows.map((r) => r.ci?.[1] ?? r.delta);
    traces.push({ type: "scatter", x, y: hi, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
      { type: "scatter", x, y: lo, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(46,144,250,0.18)",
        hoverinfo: "skip", showlegend: false, name: "interval" },
      { type: "scatter", x, y: rows.map((r) => r.delta), mode: "lines+markers", name: label, line: { color: "#1570ef", width: 2 },
        hovertemplate: "d = %{x}<br>Δ = %{y:.4f}<extra></extra>" });
  }
  const zero = { type: "line", xref: "paper", x0: 0, x1: 1, y0: 0, y1: 0, line: { color: "#344054", width: 1.2, dash: "dash" } };
  const fig = layout({ xaxis: { type: "log", title: { text: "d (log scale)" } },
    yaxis: { title: { text: `Δ = ${result.a} − ${result.b} (${result.metric})` } }, shapes: [zero], margin: { l: 60, r: 16, t: 20, b: 46 } });
  return { traces, layout: fig };
}

/** Grid fields the experiment sweeps besides d, with at least two values: what a contrast can pick. */
function contrastable(experiment) {
  return Object.entries(experiment.grid || {}).filter(([name, values]) => !["d", "seed"].includes(name) && values.length > 1);
}

function fieldControls(experiment, onChange) {
  const fields = contrastable(experiment);
  const field = h("select", { name: "contrast-field" }, fields.map(([name]) => h("option", { value: name }, name)));
  const a = h("select", { name: "contrast-a" }), b = h("select", { name: "contrast-b" });
  const margin = h("input", { name: "contrast-margin", type: "number", step: "0.005", min: "0", placeholder: "none", style: { width: "6em" } });
  const fill = () => {
    const values = (experiment.grid[field.value] || []).map((v) => JSON.stringify(v));
    a.replaceChildren(...values.map((v) => h("option", { value: v }, JSON.parse(v).toString())));
    b.replaceChildren(...values.map((v) => h("option", { value: v }, JSON.parse(v).toString())));
    a.selectedIndex = values.length - 1;
    b.selectedIndex = 0;
  };
  field.addEventListener("change", () => { fill(); onChange(); });
  for (const input of [a, b, margin]) input.addEventListener("change", onChange);
  fill();
  const node = h("div.actions", h("label", "field ", field), h("label", " a ", a), h("label", " b ", b), h("label", " margin ± ", margin));
  return { node, fields, read: () => ({ field: field.value, a: a.value, b: b.value, margin: margin.value === "" ? null : Number(margin.value) }) };
}

/** The panel: { node, update(), destroy() }; hidden when the experiment sweeps no field with two values. */
export function contrastPanel(experiment) {
  const chart = h("div.chart", { dataset: { chart: "contrast" } });
  const body = h("tbody"), sentences = h("ul.contrast-sentences"), note = h("span.muted");
  const controls = fieldControls(experiment, () => update());
  const node = h("div.panel", { dataset: { section: "contrast" }, hidden: !controls.fields.length },
    h("div.panel-head", h("h2", "Contrast: does a beat b?"), note, controls.node), chart,
    h("div.table-wrap", h("table.data.contrast", h("thead", h("tr", COLUMNS.map((c) => h("th", c)))), body)), sentences);

  async function update() {
    if (!controls.fields.length) return;
    const { field, a, b, margin } = controls.read();
    if (a === b) { setText(note, "pick two different values"); return; }
    let result;
    try {
      result = await api(`/api/experiments/${experiment.id}/contrast`,
        { query: { field, a: textOf(JSON.parse(a)), b: textOf(JSON.parse(b)), margin } });
    } catch (err) { setText(note, `contrast unavailable: ${err.message}`); return; }
    draw(result);
  }

  async function draw(result) {
    const rows = result.strata.flatMap((s) => s.rows);
    body.replaceChildren(...(rows.length ? rows.map(contrastRow) : [h("tr", h("td.muted", { colSpan: COLUMNS.length }, "No d with succeeded runs in both groups yet."))]));
    const names = { a: String(result.a), b: String(result.b) };
    sentences.replaceChildren(...rows.map((r) => h("li", contrastSentence(r, names, result.margin, 1 - result.confidence))));
    setText(note, `Welch ${Math.round(100 * result.confidence)}% intervals, one-sided tests, Holm over d`);
    node.dataset.loaded = "true";
    if (!rows.some((r) => r.delta !== null)) { emptyChart(chart, "No d with succeeded runs in both groups yet."); return; }
    const fig = contrastFigure(result);
    await react(chart, fig.traces, fig.layout, plotConfig(`experiment-${experiment.id}-contrast`));
  }

  return { node, update, destroy() { purge(chart); } };
}

const textOf = (value) => (typeof value === "string" ? value : JSON.stringify(value));
