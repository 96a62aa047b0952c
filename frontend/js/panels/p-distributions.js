// P's distribution across d: for one group (one run per d, its lowest seed), the histogram of a block
// of P (or θ_d) per d as densities, initial or trained, and the block's std against d.

import { api } from "../api.js";
import { config as plotConfig, emptyChart, labelledPngButton, layout, purge, react } from "../charts.js";
import { PALETTE, h, setText } from "../dom.js";
import { groupLabel, onePerD, sameGroup } from "../summary-text.js";
import { blockLabel } from "./histograms.js";

const LEGEND_RIGHT = { orientation: "v", x: 1.01, xanchor: "left", y: 1, yanchor: "top", font: { size: 10.5 } };

/** Replace a select's options only when they changed, keeping the choice when it still exists. */
function setOptions(select, options) {
  const current = select.value;
  if ([...select.options].map((o) => o.value).join("\n") === options.map(([value]) => value).join("\n")) return;
  select.replaceChildren(...options.map(([value, label]) => h("option", { value }, label)));
  if (options.some(([value]) => value === current)) select.value = current;
}

/** Density histograms (one per run, coloured from small d to large) and each run's std of the block. */
function densityTraces(loaded, kind, block, which) {
  const hist = [], stdInit = { x: [], y: [] }, stdTrained = { x: [], y: [] };
  let usedTrained = false;
  loaded.forEach(([run, data], i) => {
    const b = data?.[kind === "P" ? "P" : "theta_d"]?.[block];
    if (!b) return;
    const part = which === "trained" && b.trained ? b.trained : b.initial;
    usedTrained ||= part === b.trained;
    const edges = b.edges || [];
    const widths = edges.slice(0, -1).map((e, j) => edges[j + 1] - e);
    const n = part.counts.reduce((a, c) => a + c, 0) || 1;
    const shade = loaded.length > 1 ? i / (loaded.length - 1) : 1;
    const color = `hsl(${220 - 200 * shade}, 70%, ${58 - 18 * shade}%)`;
    hist.push({ type: "scatter", mode: "lines", line: { shape: "hvh", width: 1.6, color }, name: `d=${run.config.d}`,
      x: edges.slice(0, -1).map((e, j) => e + widths[j] / 2), y: part.counts.map((c, j) => c / (n * widths[j])),
      hovertemplate: `d=${run.config.d} (run #${run.id})<br>%{x:.4g}<br>density %{y:.4g}<extra></extra>` });
    stdInit.x.push(run.config.d); stdInit.y.push(b.initial?.std ?? null);
    if (b.trained) { stdTrained.x.push(run.config.d); stdTrained.y.push(b.trained.std); }
  });
  const std = [{ type: "scatter", mode: "lines+markers", name: "initial std", x: stdInit.x, y: stdInit.y, line: { color: "#98a2b3", width: 2 } }];
  if (stdTrained.x.length) std.push({ type: "scatter", mode: "lines+markers", name: "trained std", x: stdTrained.x, y: stdTrained.y, line: { color: PALETTE[0], width: 2 } });
  return { hist, std, usedTrained };
}

/** The panel: { node, update({ runsById, summary }), destroy() }. */
export function pDistributionsPanel(experimentId) {
  const distChart = h("div.chart", { dataset: { chart: "p-across-d" } });
  const stdChart = h("div.chart", { dataset: { chart: "p-std-vs-d" } });
  const groupSelect = h("select", { onchange: () => draw() });
  const blockSelect = h("select", { onchange: () => draw() });
  const whichSelect = h("select", { onchange: () => draw() },
    h("option", { value: "trained" }, "trained (if recorded)"), h("option", { value: "initial" }, "initial"));
  const note = h("span.muted");
  const files = { dist: `experiment-${experimentId}-p-across-d`, std: `experiment-${experimentId}-p-std-vs-d` };
  const node = h("div.panel", { dataset: { section: "p-across-d" } },
    h("div.panel-head", h("h2", "P distribution across d"), note),
    h("div.panel-controls", groupSelect, blockSelect, whichSelect, h("span.grow"),
      labelledPngButton(() => distChart, files.dist, "PNG histograms"), labelledPngButton(() => stdChart, files.std, "PNG std")),
    h("div.grid2", distChart, stdChart));
  const cache = new Map();           // run id → its distributions (succeeded runs only: they never change)
  let runsById = new Map(), summary = null;

  function paintGroupSelect() {
    const fields = summary?.fields || [];
    const labels = (summary?.groups || []).map((g) => groupLabel(g, fields));
    setOptions(groupSelect, labels.map((label, i) => [String(i), label]));
    groupSelect.classList.toggle("hidden", labels.length < 2);
  }

  function chosenRuns() {
    const fields = summary?.fields || [];
    const group = summary?.groups?.[Number(groupSelect.value) || 0];
    return onePerD([...runsById.values()].filter((r) => r.role !== "baseline" && r.status === "succeeded"
      && (!group || sameGroup(r.config, group, fields))));
  }

  async function draw() {
    const chosen = chosenRuns();
    if (!chosen.length) {
      blockSelect.classList.add("hidden");
      emptyChart(distChart, "Appears once runs have succeeded.");
      emptyChart(stdChart, "Std of P per block against d.");
      setText(note, "");
      return;
    }
    const loaded = await Promise.all(chosen.map(async (run) => {
      if (!cache.has(run.id)) cache.set(run.id, api(`/api/runs/${run.id}/distributions`).catch(() => null));
      return [run, await cache.get(run.id)];
    }));
    const names = [...new Set(loaded.flatMap(([, data]) => [
      ...Object.keys(data?.P || {}).map((name) => `P:${name}`), ...Object.keys(data?.theta_d || {}).map((name) => `theta_d:${name}`)]))];
    setOptions(blockSelect, names.map((n) => [n, n.startsWith("P:") ? `P · ${blockLabel(n.slice(2))}` : "θ_d"]));
    blockSelect.classList.toggle("hidden", names.length === 0);
    const [kind, block] = (blockSelect.value || names[0] || "").split(":");
    if (!block) {
      emptyChart(distChart, "The runs recorded no distributions.");
      emptyChart(stdChart, "");
      return;
    }
    const { hist, std, usedTrained } = densityTraces(loaded, kind, block, whichSelect.value);
    const label = kind === "P" ? `P · ${blockLabel(block)}` : "θ_d";
    await react(distChart, hist, layout({
      title: { text: `${label}: ${usedTrained ? "trained" : "initial"} entries`, x: 0.01, font: { size: 12 } },
      xaxis: { title: { text: "value" } }, yaxis: { title: { text: "density" } },
      showlegend: true, legend: LEGEND_RIGHT, margin: { l: 56, r: 8, t: 34, b: 42 },
    }), plotConfig(files.dist));
    await react(stdChart, std, layout({
      title: { text: `${label}: std against d`, x: 0.01, font: { size: 12 } },
      legend: { orientation: "v", x: 0.99, xanchor: "right", y: 0.99, yanchor: "top", bgcolor: "rgba(255,255,255,0.85)", font: { size: 10.5 } },
      xaxis: { type: "log", title: { text: "d" } }, yaxis: { title: { text: "std of entries" } }, margin: { l: 56, r: 8, t: 34, b: 42 },
    }), plotConfig(files.std));
    setText(note, "one run per d (lowest seed)");
    node.dataset.loaded = "true";
  }

  return {
    node,
    update(data) { ({ runsById, summary } = data); paintGroupSelect(); return draw(); },
    destroy() { purge(distChart); purge(stdChart); },
  };
}
