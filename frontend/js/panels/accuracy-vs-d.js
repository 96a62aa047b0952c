// The experiment's main chart: test accuracy against d per group (mean ± std over seeds), the
// baseline and the threshold, and each group's d_int90 on the threshold line with its interval.

import { config as plotConfig, emptyChart, layout, pngButton, purge, react } from "../charts.js";
import { PALETTE, fmtPct, h, rgba, setText } from "../dom.js";
import { dint90Text, groupLabel, groupWarnings, intervalText, largestD } from "../summary-text.js";

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

/** A group's mean curve with its ± std band (two invisible bounds, the lower one filled up to the upper). */
function groupTraces(group, label, color) {
  const points = [...(group.points || [])].sort((a, b) => a.d - b.d);
  const x = points.map((p) => p.d);
  const mean = points.map((p) => p.mean);
  const std = points.map((p) => p.std ?? 0);
  return [
    { type: "scatter", x, y: mean.map((m, j) => m + std[j]), mode: "lines", line: { width: 0, color }, hoverinfo: "skip", showlegend: false, legendgroup: label },
    { type: "scatter", x, y: mean.map((m, j) => m - std[j]), mode: "lines", line: { width: 0, color }, fill: "tonexty", fillcolor: rgba(color, 0.16), hoverinfo: "skip", showlegend: false, legendgroup: label },
    {
      type: "scatter", x, y: mean, mode: "lines+markers", name: label, legendgroup: label,
      line: { color, width: 2 }, marker: { color, size: 7 }, customdata: points.map((p) => [p.std ?? 0, p.n]),
      hovertemplate: `${label}<br>d = %{x}<br>test acc %{y:.4f} ± %{customdata[0]:.4f}<br>n = %{customdata[1]} seeds` +
        `${groupWarnings(group).map((w) => `<br>${w}`).join("")}<extra></extra>`,
    },
  ];
}

/** A horizontal line across the chart at y, with its label at the right edge. */
function levelLine(y, color, dash, text, yanchor) {
  return {
    shape: { type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { color, width: 1.4, dash } },
    annotation: { xref: "paper", x: 1, y, xanchor: "right", yanchor, showarrow: false, text, font: { size: 11, color } },
  };
}

export function accuracyFigure(summary) {
  const fields = summary.fields || [];
  const traces = [], shapes = [], annotations = [];
  let count = 0;
  summary.groups.forEach((group, i) => {
    const color = PALETTE[i % PALETTE.length];
    const label = groupLabel(group, fields);
    count += (group.points || []).length;
    traces.push(...groupTraces(group, label, color));
    const threshold = group.threshold ?? summary.threshold;
    if (threshold !== null && threshold !== undefined) traces.push(...dint90Markers(group, label, color, threshold));
    if (summary.baseline === null && group.baseline !== null && group.baseline !== undefined) {
      // Groups with different baselines (individual baselines per model, say): one pair of lines each.
      for (const [value, dash] of [[group.baseline, "dash"], [group.threshold, "dot"]]) {
        shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: value, y1: value, line: { color, width: 1.2, dash } });
      }
    }
  });
  const lines = [];
  if (summary.baseline !== null && summary.baseline !== undefined) {
    lines.push(levelLine(summary.baseline, "#344054", "dash",
      `baseline ${fmtPct(summary.baseline)}${summary.baseline_mode ? ` (${summary.baseline_mode})` : ""}`, "bottom"));
  }
  if (summary.threshold !== null && summary.threshold !== undefined) {
    lines.push(levelLine(summary.threshold, "#d92d20", "dot",
      `${Math.round(100 * (summary.fraction ?? 0.9))}% threshold ${fmtPct(summary.threshold)}`, "top"));
  }
  for (const line of lines) { shapes.push(line.shape); annotations.push(line.annotation); }
  const fig = layout({
    xaxis: { type: "log", title: { text: "d (intrinsic dimension, log scale)" } },
    yaxis: { title: { text: "test accuracy (mean ± std over seeds)" } },
    shapes, annotations, hovermode: "closest", margin: { l: 60, r: 16, t: 34, b: 46 },
  });
  return { traces, layout: fig, count };
}

/** The panel: { node, update(summary), showError(message), destroy() }. */
export function accuracyPanel(experimentId) {
  const chart = h("div.chart.tall", { dataset: { chart: "accuracy-vs-d" } });
  const note = h("span.muted");
  const filename = `experiment-${experimentId}-accuracy-vs-d`;
  const node = h("div.panel",
    h("div.panel-head", h("h2", "Test accuracy vs d"), note, h("div.actions", pngButton(() => chart, filename))),
    chart);

  async function update(summary) {
    const groups = summary.groups || [];
    if (!groups.some((g) => (g.points || []).length)) {
      emptyChart(chart, "No finished runs yet: points appear here as runs succeed.");
      setText(note, "");
      return;
    }
    const fig = accuracyFigure(summary);
    await react(chart, fig.traces, fig.layout, plotConfig(filename));
    chart.dataset.points = String(fig.count);
    const pending = summary.threshold === null ? "baseline pending: the threshold and d_int90 appear once it is known" : "";
    setText(note, [pending, ...groups.filter((g) => groupWarnings(g).length)
      .map((g) => `${groupLabel(g, summary.fields || [])}: ${groupWarnings(g).join("; ")}`)].filter(Boolean).join(" · "));
  }

  return {
    node,
    update,
    showError(message) { setText(note, message); },
    destroy() { purge(chart); },
  };
}
