// Histograms of a run's recorded distributions (P per feature block, θ_d, B): initial vs trained.

import { config as plotConfig, layout, react } from "../charts.js";
import { PALETTE, fmtInt, fmtNum, h, rgba } from "../dom.js";

const POWER_NAMES = { 2: "squared", 3: "cubed" };

/** A feature block's name as the engine writes it (linear, power_2, cos, rff_linear, …), explained. */
export function blockLabel(name) {
  const power = /^power_(\d+)$/.exec(name);
  if (power) return `${name} (${POWER_NAMES[power[1]] || `θ^${power[1]}`})`;
  return name;
}

function histogramTraces(block, colors = { initial: "#98a2b3", trained: PALETTE[0] }) {
  const edges = block.edges || [];
  const centers = edges.slice(0, -1).map((e, i) => (e + edges[i + 1]) / 2);
  const widths = edges.slice(0, -1).map((e, i) => edges[i + 1] - e);
  const traces = [];
  for (const which of ["initial", "trained"]) {
    const part = block[which];
    if (!part || !part.counts) continue;
    traces.push({
      type: "bar", name: which, x: centers, y: part.counts, width: widths, legendgroup: which,
      marker: { color: rgba(colors[which], which === "initial" ? 0.5 : 0.55), line: { width: 0 } },
      hovertemplate: `${which}<br>%{x:.4g}<br>count %{y}<extra></extra>`,
    });
  }
  return traces;
}

function statsLine(block) {
  const i = block.initial || {}, t = block.trained;
  const pair = (key) => (t ? `${fmtNum(i[key], 3)} → ${fmtNum(t[key], 3)}` : fmtNum(i[key], 3));
  return `n ${fmtInt(i.n)} · mean ${pair("mean")} · std ${pair("std")} · |x| ${pair("abs_mean")}`;
}

/**
 * One block's histogram: { cell, div, draw() } (draw once the cell is in the page).
 * `xRange`: a fixed x range, so that several runs' histograms of one block compare (the compare page).
 */
export function histogramCell(title, block, filename, { xRange = null } = {}) {
  const div = h("div.chart.small");
  const cell = h("div.hist-cell", { dataset: { block: title } },
    h("h3", title, h("span", block.trained ? "initial vs trained" : "initial")),
    div, h("div.stats-line", statsLine(block)));
  const draw = () => react(div, histogramTraces(block), layout({
    barmode: "overlay", bargap: 0, showlegend: true, margin: { l: 46, r: 8, t: 8, b: 30 },
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1, yanchor: "top", bgcolor: "rgba(255,255,255,0.7)" },
    xaxis: { title: { text: "" }, ...(xRange ? { range: xRange } : {}) }, yaxis: { title: { text: "" } },
  }), plotConfig(filename));
  return { cell, div, draw };
}
