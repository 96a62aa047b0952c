// One experiment: test accuracy against d per group (mean ± std over seeds, baseline, 90% threshold,
// d_int90 with its interval), the d_int90 table, overlaid convergence of chosen runs, the P
// distributions across d, exports, and its runs. Everything grows as runs finish. A search
// experiment also shows, per group, its rounds (the d evaluated, their mean accuracy) and the
// bracket (lo, hi] that holds d_int90, narrowing as rounds finish.

import { api } from "./api.js";
import { config as plotConfig, emptyChart, layout, loadPlotly, pngButton, purge } from "./charts.js";
import {
  FINISHED, PALETTE, STATUSES, STATUS_COLORS, clear, fmtInt, fmtNum, fmtPct, fmtTime, fmtValue, h, poller, rgba, setText, toast,
} from "./dom.js";
import { blockLabel } from "./run.js";
import { RunTable } from "./runs.js";

const POLL_MS = 3000;          // only when the event stream cannot be opened
const LIVE_STATUS_MS = 300;     // a run started or ended: redraw soon, batching its neighbours
const LIVE_PROGRESS_MS = 2000;  // an overlaid run progressed: its curves, at most this often
const OVERLAY_POINTS = 600;
const MAX_DEFAULT_OVERLAY = 8;
const METRICS = [["test_acc", "test accuracy"], ["train_acc", "train accuracy"], ["train_loss", "train loss"], ["test_loss", "test loss"]];
// A search group's status, drawn with the run-status chip of the same meaning.
const SEARCH_CHIPS = { searching: "running", decided: "succeeded", stopped: "diverged", blocked: "failed" };
const SEARCH_HELP = {
  searching: "a round is queued or running; the next one is queued when it finishes",
  decided: "the bracket is within the tolerance: d_int90 lies in (lo, hi]",
  stopped: "the search ended without a decision (see why)",
  blocked: "a run failed or was cancelled: retry it and the search goes on",
};

function relabel(button, text) {
  button.textContent = text;
  return button;
}

function groupLabel(group, fields) {
  if (!fields.length) return "all runs";
  if (fields.length === 1) return fmtValue(group[fields[0]]);
  return fields.map((f) => `${f}=${fmtValue(group[f])}`).join(", ");
}

function sameGroup(config, group, fields) {
  return fields.every((f) => JSON.stringify(config[f]) === JSON.stringify(group[f]));
}

export function statusBar(counts, total) {
  const bar = h("span.status-bar", { title: STATUSES.filter((s) => counts[s]).map((s) => `${s}: ${counts[s]}`).join("\n") });
  for (const s of STATUSES) {
    if (counts[s]) bar.append(h("span", { style: { width: `${(100 * counts[s]) / Math.max(1, total)}%`, background: STATUS_COLORS[s] } }));
  }
  return bar;
}

// ---- d_int90's flags and the runs left out ------------------------------------------------------

// How the summary's interval is drawn (docs/statistics.md).
const INTERVAL_METHODS = {
  student_t: "Student-t draw of each d's mean over seeds",
  seed_bootstrap: "seed bootstrap (resamples each d's runs)",
};
const EXCLUDED_HELP = "finished runs left out of the curve and d_int90: n at each d counts succeeded runs only";
const NOT_CONVERGED_HELP = "some runs' best test accuracy came at their last epoch: they were still improving, " +
  "so more epochs could raise the curve and lower d_int90";

export function intervalMethodText(summary) {
  const method = summary?.d_int90_method;
  if (!method) return "";
  return `${Math.round(100 * (summary.d_int90_confidence ?? 0.95))}% interval: ${INTERVAL_METHODS[method] || method}`;
}

const smallestD = (group) => Math.min(...(group.points || []).map((p) => p.d));
const largestD = (group) => Math.max(...(group.points || []).map((p) => p.d));

// d_int90 as read: "≤ d_min" when the smallest d already reaches the threshold, "not reached (> d_max)".
export function dint90Text(group, interpolated = false) {
  if (group.d_int90_not_reached) return `not reached (> ${fmtNum(largestD(group))})`;
  const value = interpolated ? group.d_int90_interpolated : group.d_int90;
  if (value === null || value === undefined) return "–";
  return group.d_int90_at_min ? `≤ ${fmtNum(value)}` : fmtNum(value);
}

// [lo, hi]: hi null is "not reached"; lo at the smallest d reads "≤ d_min".
export function intervalText(group) {
  const [lo, hi] = group.d_int90_interval || [null, null];
  if (lo === null && hi === null) {
    if (group.d_int90_interval) return "[not reached]";
    // No spread to resample: every d has a single run (docs/statistics.md).
    const single = (group.points || []).length > 0 && group.points.every((p) => p.n < 2);
    return single ? "– (one run per d: no spread to estimate)" : "–";
  }
  const low = lo !== null && lo <= smallestD(group) ? `≤ ${fmtNum(lo)}` : fmtNum(lo);
  return `[${low}, ${hi === null ? "not reached" : fmtNum(hi)}]`;
}

// "2 diverged · 1 failed", or "" when nothing finished was left out.
export function excludedText(excluded) {
  const labels = { diverged: "diverged", failed: "failed", cancelled: "cancelled", no_accuracy: "no accuracy" };
  return Object.entries(labels).filter(([key]) => (excluded || {})[key]).map(([key, label]) => `${excluded[key]} ${label}`).join(" · ");
}

function notConvergedChip(group) {
  if (!group.not_converged) return null;
  const ids = group.not_converged_run_ids || [];
  return h("span.chip.st-diverged", { dataset: { notConverged: ids.join(",") },
    title: `${NOT_CONVERGED_HELP}\nruns: ${ids.map((id) => `#${id}`).join(", ")}` }, "not converged");
}

// ---- accuracy vs d -----------------------------------------------------------------------------

// The group's d_int90 on the threshold line: a diamond with its interval, a left-pointing triangle
// when it is ≤ d_min, a right-pointing one at d_max when the threshold is not reached.
function dint90Markers(group, label, color, threshold) {
  const reached = group.d_int90 !== null && group.d_int90 !== undefined;
  if (!reached && !group.d_int90_not_reached) return [];
  const x0 = reached ? group.d_int90_interpolated ?? group.d_int90 : largestD(group);
  const [lo, hi] = group.d_int90_interval || [null, null];
  const errorX = { type: "data", symmetric: false, array: [hi !== null && reached ? Math.max(0, hi - x0) : 0],
    arrayminus: [lo !== null && reached ? Math.max(0, x0 - lo) : 0], color, thickness: 2, width: 7 };
  const symbol = !reached ? "triangle-right" : group.d_int90_at_min ? "triangle-left" : "diamond";
  const text = !reached ? `threshold ${dint90Text(group)}`
    : `first grid d reaching the threshold: ${dint90Text(group)}<br>interpolated on log d: ${dint90Text(group, true)}` +
      `${group.d_int90_at_min ? "<br>the smallest d already reaches it: an upper bound" : ""}`;
  return [{
    type: "scatter", x: [x0], y: [threshold], mode: "markers", name: `d_int90 · ${label}`, legendgroup: label, showlegend: false,
    marker: { symbol, size: 14, color, line: { color: "#fff", width: 1.5 } }, error_x: errorX,
    hovertemplate: `d_int90 · ${label}<br>${text}<br>interval: ${intervalText(group)}<extra></extra>`,
  }];
}

// What a reader of a group's curve must know: runs left out, runs still improving.
function groupWarnings(group) {
  const excluded = excludedText(group.excluded);
  return [excluded ? `left out: ${excluded}` : "", group.not_converged ? "not converged: best test accuracy at the last epoch" : ""]
    .filter(Boolean);
}

function accuracyFigure(summary) {
  const fields = summary.fields || [];
  const traces = [];
  const shapes = [];
  const annotations = [];
  let xs = [];
  summary.groups.forEach((group, i) => {
    const color = PALETTE[i % PALETTE.length];
    const label = groupLabel(group, fields);
    const points = [...(group.points || [])].sort((a, b) => a.d - b.d);
    const x = points.map((p) => p.d);
    xs = xs.concat(x);
    const mean = points.map((p) => p.mean);
    const std = points.map((p) => p.std ?? 0);
    traces.push({ type: "scatter", x, y: mean.map((m, j) => m + std[j]), mode: "lines", line: { width: 0, color }, hoverinfo: "skip", showlegend: false, legendgroup: label });
    traces.push({ type: "scatter", x, y: mean.map((m, j) => m - std[j]), mode: "lines", line: { width: 0, color }, fill: "tonexty", fillcolor: rgba(color, 0.16), hoverinfo: "skip", showlegend: false, legendgroup: label });
    traces.push({
      type: "scatter", x, y: mean, mode: "lines+markers", name: label, legendgroup: label,
      line: { color, width: 2 }, marker: { color, size: 7 }, customdata: points.map((p) => [p.std ?? 0, p.n]),
      hovertemplate: `${label}<br>d = %{x}<br>test acc %{y:.4f} ± %{customdata[0]:.4f}<br>n = %{customdata[1]} seeds` +
        `${groupWarnings(group).map((w) => `<br>${w}`).join("")}<extra></extra>`,
    });
    const threshold = group.threshold ?? summary.threshold;
    if (threshold !== null && threshold !== undefined) traces.push(...dint90Markers(group, label, color, threshold));
    if (summary.baseline === null && group.baseline !== null && group.baseline !== undefined) {
      // Groups with different baselines (individual baselines per model, say): one pair of lines each.
      for (const [value, dash] of [[group.baseline, "dash"], [group.threshold, "dot"]]) {
        shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: value, y1: value, line: { color, width: 1.2, dash } });
      }
    }
  });
  if (summary.baseline !== null && summary.baseline !== undefined) {
    shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: summary.baseline, y1: summary.baseline, line: { color: "#344054", width: 1.4, dash: "dash" } });
    annotations.push({ xref: "paper", x: 1, y: summary.baseline, xanchor: "right", yanchor: "bottom", showarrow: false,
      text: `baseline ${fmtPct(summary.baseline)}${summary.baseline_mode ? ` (${summary.baseline_mode})` : ""}`, font: { size: 11, color: "#344054" } });
  }
  if (summary.threshold !== null && summary.threshold !== undefined) {
    shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: summary.threshold, y1: summary.threshold, line: { color: "#d92d20", width: 1.4, dash: "dot" } });
    annotations.push({ xref: "paper", x: 1, y: summary.threshold, xanchor: "right", yanchor: "top", showarrow: false,
      text: `${Math.round(100 * (summary.fraction ?? 0.9))}% threshold ${fmtPct(summary.threshold)}`, font: { size: 11, color: "#d92d20" } });
  }
  const fig = layout({
    xaxis: { type: "log", title: { text: "d (intrinsic dimension, log scale)" } },
    yaxis: { title: { text: "test accuracy (mean ± std over seeds)" } },
    shapes, annotations, hovermode: "closest", margin: { l: 60, r: 16, t: 34, b: 46 },
  });
  return { traces, layout: fig, count: xs.length };
}

function dint90Row(group, index, summary) {
  const fields = summary.fields || [];
  const counts = group.counts || {};
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const done = [...FINISHED].reduce((n, s) => n + (counts[s] || 0), 0);
  const reached = group.d_int90 !== null && group.d_int90 !== undefined;
  const excluded = excludedText(group.excluded);
  const chip = notConvergedChip(group);
  return h("tr", { dataset: { group: groupLabel(group, fields), atMin: String(!!group.d_int90_at_min), notReached: String(!!group.d_int90_not_reached) } },
    h("td", h("span.legend-swatch", { style: { background: PALETTE[index % PALETTE.length] } }), groupLabel(group, fields), chip ? " " : null, chip),
    h("td.num", `${done}/${total}`),
    h("td.num", { title: EXCLUDED_HELP, dataset: { excluded: JSON.stringify(group.excluded || {}) } }, excluded || "–"),
    h("td.num", fmtPct(group.baseline ?? summary.baseline)),
    h("td.num", fmtPct(group.threshold ?? summary.threshold)),
    h("td.num", dint90Text(group)),
    h("td.num", dint90Text(group, true)),
    h("td.num", intervalText(group)),
    h("td.num", fmtInt(group.D)),
    // d_int90 ≤ d_min makes D / d_int90 a lower bound
    h("td.num", reached && group.D ? `${group.d_int90_at_min ? "≥ " : ""}${fmtNum(group.D / group.d_int90, 4)}×` : "–"));
}

// ---- a search's rounds -------------------------------------------------------------------------

export function searchText(search) {
  if (!search) return "";
  return `Search for d: from d = ${fmtInt(search.d_start)}, doubled (up to d_max = ${fmtInt(search.d_max)}) until the mean ` +
    `reaches the threshold, then bisected on a log scale until hi / lo ≤ ${fmtNum(1 + search.tolerance)}; at most ${search.max_rounds} rounds per group`;
}

function bracketText(bracket) {
  const [lo, hi] = bracket || [null, null];
  if (lo === null && hi === null) return "–";
  return `(${lo === null ? "0" : fmtInt(lo)}, ${hi === null ? "∞" : fmtInt(hi)}]`;
}

function roundsFigure(summary) {
  const fields = summary.fields || [];
  const traces = [];
  const shapes = [];
  summary.groups.forEach((group, i) => {
    const rounds = group.search?.rounds || [];
    if (!rounds.length) return;
    const color = PALETTE[i % PALETTE.length];
    const label = groupLabel(group, fields);
    traces.push({
      type: "scatter", mode: "lines+markers", name: label, x: rounds.map((r) => r.round), y: rounds.map((r) => r.d),
      line: { color, width: 1.6, dash: "dot" },
      marker: { color, size: 10, symbol: rounds.map((r) => (r.reached === null ? "circle-open-dot" : r.reached ? "circle" : "circle-open")),
        line: { color, width: 2 } },
      customdata: rounds.map((r) => [r.mean === null ? "running" : fmtPct(r.mean), r.reached === null ? "" : r.reached ? "reached" : "short"]),
      hovertemplate: `${label}<br>round %{x}: d = %{y}<br>mean test acc %{customdata[0]} %{customdata[1]}<extra></extra>`,
    });
    const [lo, hi] = group.search.bracket || [null, null];
    const last = rounds[rounds.length - 1].round;
    if (lo !== null && hi !== null) {
      shapes.push({ type: "rect", x0: 0.5, x1: last + 0.5, y0: lo, y1: hi, fillcolor: rgba(color, 0.12), line: { width: 0 }, layer: "below" });
    }
  });
  return { traces, layout: layout({
    xaxis: { title: { text: "round" }, dtick: 1 }, yaxis: { type: "log", title: { text: "d evaluated (log scale)" } },
    shapes, hovermode: "closest", showlegend: traces.length > 1, margin: { l: 60, r: 16, t: 12, b: 42 },
  }) };
}

// ---- the page ---------------------------------------------------------------------------------

export async function renderExperimentPage(root, experimentId) {
  loadPlotly().catch(() => {});   // parsed while the experiment is on its way
  let experiment;
  try {
    experiment = await api(`/api/experiments/${experimentId}`);
  } catch (err) {
    root.append(h("div.alert.error", { text: err.status === 404 ? `There is no experiment #${experimentId}.` : `Could not load experiment #${experimentId}: ${err.message}` }));
    return null;
  }
  let closed = false;
  let summary = null;
  let runsById = new Map();           // member and baseline runs with their configs (for grouping)
  const selection = new Set();
  let userSelected = false;

  // ---- header ----
  const countsBox = h("span.nowrap");
  const archivedTag = h("span.tag.hidden", { title: "Hidden from the experiments and runs lists" }, "archived");
  const archiveButton = h("button", { onclick: toggleArchived, dataset: { action: "archive" } });
  const head = h("div.page-head",
    h("h1", experiment.name), h("span.muted", `#${experiment.id} · ${fmtTime(experiment.created_at)}`), archivedTag, countsBox,
    h("div.actions",
      h("a.btn", { href: `/api/experiments/${experiment.id}/export?format=csv`, download: `experiment-${experiment.id}.csv`, dataset: { export: "csv" } }, "Export CSV"),
      h("a.btn", { href: `/api/experiments/${experiment.id}/export?format=json`, download: `experiment-${experiment.id}.json`, dataset: { export: "json" } }, "Export JSON"),
      h("a.btn", { href: `#/new?clone_experiment=${experiment.id}` }, "Clone into form"),
      h("button.danger", { onclick: cancelRemaining, title: "Cancel every queued or running run of this experiment" }, "Cancel remaining"),
      archiveButton,
      h("button.danger", { onclick: deleteExperiment, dataset: { action: "delete" }, title: "Delete this experiment, its runs and their curves" }, "Delete")));
  paintArchived();
  const gridText = Object.entries(experiment.grid || {}).map(([k, vals]) => `${k} ∈ {${vals.map(fmtValue).join(", ")}}`).join(" × ");
  const baseline = experiment.baseline || {};
  const searching = experiment.kind === "search";
  const info = h("p.muted", { style: { margin: "-6px 0 12px" }, dataset: { kind: experiment.kind || "grid" } },
    gridText ? `Grid: ${gridText}` : searching ? "One group" : "No grid", ` · seeds ${JSON.stringify(experiment.seeds || [])}`,
    ` · baseline: ${baseline.mode === "global" ? `global ${fmtPct(baseline.value)}` : baseline.mode === "individual" ? "individual (direct-training runs)" : "none"}`,
    searching ? h("br") : null, searching ? searchText(experiment.search) : null);

  // ---- search: rounds and bracket per group ----
  const searchBody = h("div.search-groups");
  const roundsDiv = h("div.chart", { dataset: { chart: "search-rounds" } });
  const searchPanel = searching ? h("div.panel", { dataset: { section: "search" } },
    h("div.panel-head", h("h2", "Search for d_int90"),
      h("span.faint", "each round evaluates one d with every seed; filled: the mean reached the threshold, hollow: it fell short; band: the bracket (lo, hi]"),
      h("div.actions", pngButton(() => roundsDiv, `experiment-${experiment.id}-search-rounds`))),
    h("div.grid2", roundsDiv, searchBody)) : null;

  // ---- main chart ----
  const mainDiv = h("div.chart.tall", { dataset: { chart: "accuracy-vs-d" } });
  const mainNote = h("span.muted");
  const mainPanel = h("div.panel",
    h("div.panel-head", h("h2", "Test accuracy vs d"), mainNote, h("div.actions", pngButton(() => mainDiv, `experiment-${experiment.id}-accuracy-vs-d`))),
    mainDiv);

  // ---- d_int90 table ----
  const dintBody = h("tbody");
  const dintNote = h("span.faint");
  const dintPanel = h("div.panel", { dataset: { section: "dint90" } },
    h("div.panel-head", h("h2", "d_int90 per group"), dintNote),
    h("div.table-wrap", h("table.data.dint", h("thead", h("tr",
      [["Group"], ["Finished", ".num"], ["Left out", ".num", EXCLUDED_HELP], ["Baseline", ".num"], ["Threshold", ".num"],
        ["d_int90", ".num"], ["Interpolated", ".num", "interpolated linearly in log d between the grid points that bracket the threshold"],
        ["Interval", ".num"], ["D", ".num"], ["D / d_int90", ".num"]].map(([t, cls = "", title]) => h(`th${cls}`, { title }, t)))), dintBody)));

  // ---- overlay ----
  const overlayDiv = h("div.chart", { dataset: { chart: "overlay" } });
  const metricSelect = h("select", { onchange: () => drawOverlay() }, METRICS.map(([key, label]) => h("option", { value: key }, label)));
  const overlayPanel = h("div.panel",
    h("div.panel-head", h("h2", "Convergence of chosen runs"), h("div.actions", metricSelect, pngButton(() => overlayDiv, `experiment-${experiment.id}-convergence`))),
    h("p.faint", { style: { margin: "0 0 6px" } }, "Tick runs in the table below to overlay them."), overlayDiv);

  // ---- P across d ----
  const distDiv = h("div.chart", { dataset: { chart: "p-across-d" } });
  const stdDiv = h("div.chart", { dataset: { chart: "p-std-vs-d" } });
  const groupSelect = h("select", { onchange: () => drawDistributions() });
  const blockSelect = h("select", { onchange: () => drawDistributions() });
  const whichSelect = h("select", { onchange: () => drawDistributions() }, h("option", { value: "trained" }, "trained (if recorded)"), h("option", { value: "initial" }, "initial"));
  const distNote = h("span.muted");
  const distPanel = h("div.panel", { dataset: { section: "p-across-d" } },
    h("div.panel-head", h("h2", "P distribution across d"), distNote),
    h("div.panel-controls", groupSelect, blockSelect, whichSelect, h("span.grow"),
      relabel(pngButton(() => distDiv, `experiment-${experiment.id}-p-across-d`), "PNG histograms"),
      relabel(pngButton(() => stdDiv, `experiment-${experiment.id}-p-std-vs-d`), "PNG std")),
    h("div.grid2", distDiv, stdDiv));

  // ---- runs ----
  const table = new RunTable({
    // Every run of the experiment, archived or not (nor hidden when the experiment itself is archived).
    filters: { experiment_id: experiment.id, archived: "all" }, showFilters: false, showExperiment: false, selectable: true, limit: 100,
    selection,
    onSelection: () => { userSelected = true; drawOverlay(); },
  });
  const runsPanel = h("div.panel", h("div.panel-head", h("h2", "Runs")), table.node);

  root.append(...[head, info, mainPanel, searchPanel, dintPanel, h("div.grid2", overlayPanel, distPanel), runsPanel]
    .filter(Boolean));   // no search panel for a grid: DOM append would write "null"

  // ---- data ----
  const paintCounts = () => {
    const counts = experiment.counts || {};
    const total = experiment.run_count ?? Object.values(counts).reduce((a, b) => a + b, 0);
    const finished = [...FINISHED].reduce((n, s) => n + (counts[s] || 0), 0);
    countsBox.replaceChildren(statusBar(counts, total), h("span.muted", { style: { marginLeft: "8px" } }, `${finished}/${total} finished`),
      ...STATUSES.filter((s) => counts[s]).map((s) => h(`span.chip.st-${s}`, { style: { marginLeft: "6px" } }, `${counts[s]} ${s}`)));
  };

  async function loadRuns() {
    // All runs, with the config fields that group and label them (the summary's fields are the
    // grid's); experiments are capped at max_experiment_runs.
    const configFields = [...new Set([...Object.keys(experiment.grid || {}), "d", "seed"])];
    const items = [];
    for (let offset = 0; ; offset += 1000) {
      const page = await api("/api/runs", {
        query: { experiment_id: experiment.id, limit: 1000, offset, sort: "id", config_fields: configFields },
      });
      items.push(...page.items);
      if (items.length >= page.total || !page.items.length) break;
    }
    runsById = new Map(items.map((r) => [r.id, r]));
  }

  async function drawMain() {
    try {
      summary = await api(`/api/experiments/${experiment.id}/summary`);
    } catch (err) {
      setText(mainNote, `summary unavailable: ${err.message}`);
      return;
    }
    const groups = summary.groups || [];
    const hasPoints = groups.some((g) => (g.points || []).length);
    if (!hasPoints) {
      emptyChart(mainDiv, "No finished runs yet: points appear here as runs succeed.");
      setText(mainNote, "");
    } else {
      const Plotly = await loadPlotly();
      const fig = accuracyFigure(summary);
      if (!mainDiv.data) clear(mainDiv);
      await Plotly.react(mainDiv, fig.traces, fig.layout, plotConfig(`experiment-${experiment.id}-accuracy-vs-d`));
      mainDiv.dataset.points = String(fig.count);
      const pending = summary.threshold === null ? "baseline pending: the threshold and d_int90 appear once it is known" : "";
      setText(mainNote, [pending, ...groups.filter((g) => groupWarnings(g).length)
        .map((g) => `${groupLabel(g, summary.fields || [])}: ${groupWarnings(g).join("; ")}`)].filter(Boolean).join(" · "));
    }
    paintDint();
    paintGroupSelect();
    if (searching) await paintSearch();
  }

  async function paintSearch() {
    const fields = summary?.fields || [];
    const groups = (summary?.groups || []).filter((g) => g.search);
    searchBody.replaceChildren(...(groups.length ? groups.map((g) => searchGroupNode(g, summary.groups.indexOf(g), fields))
      : [h("p.muted", "The search state appears with its first round.")]));
    if (!groups.some((g) => (g.search.rounds || []).length)) { emptyChart(roundsDiv, "No rounds yet."); return; }
    const Plotly = await loadPlotly();
    if (closed) return;
    const fig = roundsFigure(summary);
    if (!roundsDiv.data) clear(roundsDiv);
    await Plotly.react(roundsDiv, fig.traces, fig.layout, plotConfig(`experiment-${experiment.id}-search-rounds`));
  }

  function searchGroupNode(group, index, fields) {
    const search = group.search;
    const label = groupLabel(group, fields);
    const [lo, hi] = search.bracket || [null, null];
    const reached = group.d_int90 !== null && group.d_int90 !== undefined;
    const rows = (search.rounds || []).map((r) => {
      const statuses = r.run_ids.map((id) => runsById.get(id)?.status).filter(Boolean);
      const done = statuses.filter((st) => FINISHED.has(st)).length;
      const verdict = r.reached === null ? h("span.muted", `${done}/${r.run_ids.length} finished`)
        : r.reached ? h("span.chip.st-succeeded", "reached") : h("span.chip.st-failed", r.diverged ? `short (${r.diverged} diverged)` : "short");
      return h("tr", { dataset: { round: r.round, d: r.d } },
        h("td.num", String(r.round)), h("td.num", fmtInt(r.d)), h("td.num", r.mean === null ? "–" : fmtPct(r.mean)),
        h("td.num", `${r.n}/${r.run_ids.length}`), h("td", verdict));
    });
    return h("div.search-group", { dataset: { searchGroup: label, status: search.status }, style: { marginBottom: "12px" } },
      h("div.panel-controls",
        h("strong", h("span.legend-swatch", { style: { background: PALETTE[index % PALETTE.length] } }), label),
        h(`span.chip.st-${SEARCH_CHIPS[search.status] || "queued"}`, { title: SEARCH_HELP[search.status] || "", dataset: { searchStatus: search.status } }, search.status),
        h("span", { dataset: { bracket: JSON.stringify(search.bracket) }, title: "d_int90 lies in (lo, hi]: lo fell short of the threshold, hi reached it" },
          `bracket ${bracketText(search.bracket)}`, lo !== null && hi !== null ? h("span.faint", ` · hi / lo = ${fmtNum(hi / lo, 3)}`) : null),
        h("span", { dataset: { dint90: reached ? group.d_int90 : "" } }, reached
          ? `d_int90 = ${dint90Text(group)} (interpolated ${dint90Text(group, true)}, interval ${intervalText(group)})`
          : "d_int90 not known yet")),
      search.reason ? h("p.faint", { style: { margin: "0 0 6px" }, dataset: { reason: "" } }, search.reason) : null,
      h("div.table-wrap", h("table.data.rounds", h("thead", h("tr",
        ["Round", "d", "Mean test acc", "Seeds", "vs threshold"].map((t, i) => h(`th${i < 4 ? ".num" : ""}`, t)))), h("tbody", rows))));
  }

  function paintDint() {
    const rows = (summary?.groups || []).map((g, i) => dint90Row(g, i, summary));
    dintBody.replaceChildren(...(rows.length ? rows : [h("tr", h("td.muted", { colSpan: 10 }, "No groups yet."))]));
    const fraction = Math.round(100 * (summary?.fraction ?? 0.9));
    setText(dintNote, `smallest grid d whose mean test accuracy reaches ${fraction}% of the baseline` +
      (summary?.d_int90_method ? ` · ${intervalMethodText(summary)}` : ""));
    dintNote.dataset.intervalMethod = summary?.d_int90_method || "";
  }

  // ---- overlay of chosen runs ----
  const overlayCache = new Map();    // run id → {version, series}
  async function drawOverlay() {
    const ids = [...selection].sort((a, b) => a - b);
    if (!ids.length) { emptyChart(overlayDiv, "No runs chosen."); return; }
    const metric = metricSelect.value;
    const Plotly = await loadPlotly();
    const results = await Promise.all(ids.map(async (id) => {
      const run = runsById.get(id);
      const cached = overlayCache.get(`${id}:${metric}`);
      if (cached && run && FINISHED.has(run.status) && cached.finished) return [id, cached.series];
      try {
        const data = await api(`/api/runs/${id}/metrics`, { query: { keys: metric, max_points: OVERLAY_POINTS } });
        const series = data.series?.[metric] || { steps: [], values: [] };
        overlayCache.set(`${id}:${metric}`, { series, finished: run && FINISHED.has(run.status) });
        return [id, series];
      } catch { return [id, { steps: [], values: [] }]; }
    }));
    if (closed) return;
    const fields = summary?.fields || [];
    const traces = results.map(([id, s], i) => {
      const run = runsById.get(id);
      const c = run?.config || {};
      const parts = [`#${id}`, run?.role === "baseline" ? "baseline" : `d=${c.d}`, ...fields.map((f) => fmtValue(c[f])), `seed ${c.seed}`];
      return { type: "scatter", mode: metric.startsWith("test") ? "lines+markers" : "lines", name: parts.join(" · "),
        x: s.steps, y: s.values, line: { width: 1.6, color: PALETTE[i % PALETTE.length] }, marker: { size: 4 } };
    });
    if (!overlayDiv.data) clear(overlayDiv);
    await Plotly.react(overlayDiv, traces, layout({
      xaxis: { title: { text: "step" } }, yaxis: { title: { text: METRICS.find(([k]) => k === metric)[1] } },
      showlegend: true, legend: { orientation: "v", x: 1.01, xanchor: "left", y: 1, yanchor: "top", font: { size: 10.5 } },
      margin: { l: 56, r: 8, t: 12, b: 42 },
    }), plotConfig(`experiment-${experiment.id}-convergence`));
  }

  function defaultSelection() {
    if (userSelected || selection.size) return;
    // One run per d of the first group (its lowest seed): convergence against d at a glance.
    const fields = summary?.fields || [];
    const first = summary?.groups?.[0];
    const members = [...runsById.values()].filter((r) => r.role !== "baseline" && (!first || sameGroup(r.config, first, fields)));
    const byD = new Map();
    for (const run of members.sort((a, b) => a.config.seed - b.config.seed || a.id - b.id)) if (!byD.has(run.config.d)) byD.set(run.config.d, run);
    [...byD.values()].sort((a, b) => a.config.d - b.config.d).slice(0, MAX_DEFAULT_OVERLAY).forEach((r) => selection.add(r.id));
    for (const id of selection) table.rows.get(id)?.tr.classList.add("selected");
    table.rows.forEach((row) => table.updateRow(row, row.run));
  }

  // ---- P across d ----
  const distCache = new Map();       // run id → distributions (finished runs only: they never change)
  function paintGroupSelect() {
    const fields = summary?.fields || [];
    const labels = (summary?.groups || []).map((g) => groupLabel(g, fields));
    const current = groupSelect.value;
    if ([...groupSelect.options].map((o) => o.value).join("\n") !== labels.map((_, i) => String(i)).join("\n")) {
      groupSelect.replaceChildren(...labels.map((label, i) => h("option", { value: String(i) }, label)));
      if (current && Number(current) < labels.length) groupSelect.value = current;
    }
    groupSelect.classList.toggle("hidden", labels.length < 2);
  }

  async function drawDistributions() {
    const fields = summary?.fields || [];
    const group = summary?.groups?.[Number(groupSelect.value) || 0];
    const candidates = [...runsById.values()].filter((r) => r.role !== "baseline" && r.status === "succeeded" && (!group || sameGroup(r.config, group, fields)));
    const byD = new Map();
    for (const run of candidates.sort((a, b) => a.config.seed - b.config.seed || a.id - b.id)) if (!byD.has(run.config.d)) byD.set(run.config.d, run);
    const chosen = [...byD.values()].sort((a, b) => a.config.d - b.config.d);
    if (!chosen.length) {
      blockSelect.classList.add("hidden");
      emptyChart(distDiv, "Appears once runs have succeeded.");
      emptyChart(stdDiv, "Std of P per block against d.");
      setText(distNote, "");
      return;
    }
    const loaded = await Promise.all(chosen.map(async (run) => {
      if (!distCache.has(run.id)) {
        distCache.set(run.id, api(`/api/runs/${run.id}/distributions`).catch(() => null));
      }
      return [run, await distCache.get(run.id)];
    }));
    if (closed) return;
    const blocks = new Set();
    for (const [, data] of loaded) {
      for (const name of Object.keys(data?.P || {})) blocks.add(`P:${name}`);
      for (const name of Object.keys(data?.theta_d || {})) blocks.add(`theta_d:${name}`);
    }
    const names = [...blocks];
    const current = blockSelect.value;
    if ([...blockSelect.options].map((o) => o.value).join() !== names.join()) {
      blockSelect.replaceChildren(...names.map((n) => h("option", { value: n }, n.startsWith("P:") ? `P · ${blockLabel(n.slice(2))}` : "θ_d")));
      if (names.includes(current)) blockSelect.value = current;
    }
    blockSelect.classList.toggle("hidden", names.length === 0);
    const [kind, block] = (blockSelect.value || names[0] || "").split(":");
    if (!block) {
      emptyChart(distDiv, "The runs recorded no distributions.");
      emptyChart(stdDiv, "");
      return;
    }
    const which = whichSelect.value;
    const Plotly = await loadPlotly();
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
      const shade = chosen.length > 1 ? i / (chosen.length - 1) : 1;
      const color = `hsl(${220 - 200 * shade}, 70%, ${58 - 18 * shade}%)`;
      hist.push({ type: "scatter", mode: "lines", line: { shape: "hvh", width: 1.6, color }, name: `d=${run.config.d}`,
        x: edges.slice(0, -1).map((e, j) => e + widths[j] / 2), y: part.counts.map((c, j) => c / (n * widths[j])),
        hovertemplate: `d=${run.config.d} (run #${run.id})<br>%{x:.4g}<br>density %{y:.4g}<extra></extra>` });
      stdInit.x.push(run.config.d); stdInit.y.push(b.initial?.std ?? null);
      if (b.trained) { stdTrained.x.push(run.config.d); stdTrained.y.push(b.trained.std); }
    });
    if (!distDiv.data) clear(distDiv);
    if (!stdDiv.data) clear(stdDiv);
    const label = kind === "P" ? `P · ${blockLabel(block)}` : "θ_d";
    await Plotly.react(distDiv, hist, layout({
      title: { text: `${label}: ${usedTrained ? "trained" : "initial"} entries`, x: 0.01, font: { size: 12 } },
      xaxis: { title: { text: "value" } }, yaxis: { title: { text: "density" } },
      showlegend: true, legend: { orientation: "v", x: 1.01, xanchor: "left", y: 1, yanchor: "top", font: { size: 10.5 } },
      margin: { l: 56, r: 8, t: 34, b: 42 },
    }), plotConfig(`experiment-${experiment.id}-p-across-d`));
    const stdTraces = [{ type: "scatter", mode: "lines+markers", name: "initial std", x: stdInit.x, y: stdInit.y, line: { color: "#98a2b3", width: 2 } }];
    if (stdTrained.x.length) stdTraces.push({ type: "scatter", mode: "lines+markers", name: "trained std", x: stdTrained.x, y: stdTrained.y, line: { color: PALETTE[0], width: 2 } });
    await Plotly.react(stdDiv, stdTraces, layout({
      title: { text: `${label}: std against d`, x: 0.01, font: { size: 12 } },
      legend: { orientation: "v", x: 0.99, xanchor: "right", y: 0.99, yanchor: "top", bgcolor: "rgba(255,255,255,0.85)", font: { size: 10.5 } },
      xaxis: { type: "log", title: { text: "d" } }, yaxis: { title: { text: "std of entries" } }, margin: { l: 56, r: 8, t: 34, b: 42 },
    }), plotConfig(`experiment-${experiment.id}-p-std-vs-d`));
    setText(distNote, `one run per d (lowest seed)`);
    distPanel.dataset.loaded = "true";
  }

  function paintArchived() {
    archivedTag.classList.toggle("hidden", !experiment.archived);
    archiveButton.textContent = experiment.archived ? "Unarchive" : "Archive";
    archiveButton.title = experiment.archived ? "Show this experiment and its runs in the lists again"
      : "Hide this experiment and its runs from the lists (nothing is deleted)";
  }

  async function toggleArchived() {
    try {
      const updated = await api(`/api/experiments/${experiment.id}`, { method: "PATCH", body: { archived: !experiment.archived } });
      experiment = { ...experiment, archived: updated.archived };
      paintArchived();
      toast(updated.archived ? "Archived: hidden from the lists" : "Unarchived");
    } catch (err) {
      toast(err.message, "error", 6000);
    }
  }

  async function deleteExperiment() {
    const total = experiment.run_count ?? (experiment.runs || []).length;
    if (!confirm(`Delete experiment '${experiment.name}' and its ${total} run${total === 1 ? "" : "s"}, with their curves and distributions? This cannot be undone.`)) return;
    try {
      await api(`/api/experiments/${experiment.id}`, { method: "DELETE" });
    } catch (err) {
      toast(err.message, "error", 8000);
      return;
    }
    toast(`Experiment #${experiment.id} deleted`);
    location.hash = "#/experiments";
  }

  async function cancelRemaining() {
    const open = (experiment.runs || []).filter((r) => !FINISHED.has(r.status));
    if (!open.length) { toast("Nothing left to cancel"); return; }
    if (!confirm(`Cancel ${open.length} queued or running run(s) of this experiment?`)) return;
    let failed = 0;
    for (const run of open) {
      try { await api(`/api/runs/${run.id}/cancel`, { method: "POST" }); } catch { failed += 1; }
    }
    toast(failed ? `${open.length - failed} cancelled, ${failed} could not be (already finished?)` : `${open.length} run(s) cancelled`);
    refresh(true);
  }

  // ---- live: re-read when runs finish ----
  let finishedKey = null;
  const drawnStatus = new Map();    // run id → the status the charts were last drawn with
  async function refresh(force = false) {
    try {
      experiment = await api(`/api/experiments/${experiment.id}`);
    } catch { return; }
    if (closed) return;
    for (const run of experiment.runs || []) drawnStatus.set(run.id, run.status);
    paintCounts();
    const key = JSON.stringify(experiment.counts || {});
    const running = (experiment.runs || []).some((r) => r.status === "running");
    if (force || key !== finishedKey) {
      finishedKey = key;
      await loadRuns();
      await drawMain();
      defaultSelection();
      await Promise.all([drawOverlay(), drawDistributions()]);
    } else if (running && selection.size) {
      await loadRuns();
      await drawOverlay();
    }
  }

  // The experiment's event stream says when a run starts, progresses or ends (and, for a search,
  // when a round's runs appear): a status change redraws everything, progress of an overlaid
  // run only the overlay. Redraws are batched; polling takes over if the stream cannot be had.
  let pending = null, scheduled = false, poll = null;
  function redraw(what) {
    if (pending !== "all") pending = what;
    if (scheduled) return;
    scheduled = true;
    setTimeout(async () => {
      const doing = pending;
      pending = null;
      try {
        if (closed) return;
        if (doing === "all") await refresh(true);
        else await drawOverlay();
      } finally {
        scheduled = false;
        if (pending && !closed) redraw(pending);
      }
    }, pending === "all" ? LIVE_STATUS_MS : LIVE_PROGRESS_MS);
  }

  paintCounts();
  emptyChart(overlayDiv, "No runs chosen.");
  await Promise.all([table.start(), refresh(true)]);
  // Opened once the page is drawn: its first event (every run's status) redraws only what changed since.
  const stream = new EventSource(`/api/experiments/${experiment.id}/events`);
  stream.addEventListener("status", (e) => {
    const changed = JSON.parse(e.data);
    if (changed.some((run) => drawnStatus.get(run.id) !== run.status)) redraw("all");
    else if (changed.some((run) => run.status === "running" && selection.has(run.id))) {
      // Only progress moved: the event carries it, so the overlay redraws without re-reading every run.
      for (const run of changed) if (runsById.has(run.id)) Object.assign(runsById.get(run.id), run);
      redraw("overlay");
    }
  });
  stream.addEventListener("end", () => {
    stream.close();
    if ([...drawnStatus.values()].some((status) => !FINISHED.has(status))) redraw("all");   // drawn while going
  });
  stream.onerror = () => {
    if (stream.readyState === EventSource.CLOSED && !closed && !poll) poll = poller(() => refresh(false), POLL_MS);
  };

  return () => {
    closed = true;
    stream.close();
    poll?.stop();
    table.stop();
    [mainDiv, overlayDiv, distDiv, stdDiv, roundsDiv].forEach(purge);
  };
}
