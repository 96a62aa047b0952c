// A search experiment's rounds: the d evaluated each round per group on a log axis (filled where the
// mean reached the threshold, hollow where it fell short, the bracket as a band), and per group its
// status, bracket, d_int90 and the table of its rounds.

import { config as plotConfig, emptyChart, layout, pngButton, purge, react } from "../charts.js";
import { PALETTE, fmtInt, fmtNum, fmtPct, h, rgba } from "../dom.js";
import { isFinished } from "../statuses.js";
import { bracketText, dint90Text, groupLabel, intervalText } from "../summary-text.js";

// A search group's status, drawn with the run-status chip of the same meaning.
const SEARCH_CHIPS = { searching: "running", decided: "succeeded", stopped: "diverged", blocked: "failed" };
const SEARCH_HELP = {
  searching: "a round is queued or running; the next one is queued when it finishes",
  decided: "the bracket is within the tolerance: d_int90 lies in (lo, hi]",
  stopped: "the search ended without a decision (see why)",
  blocked: "a run failed or was cancelled: retry it and the search goes on",
};

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

function roundRow(round, runsById) {
  const statuses = round.run_ids.map((id) => runsById.get(id)?.status).filter(Boolean);
  const done = statuses.filter(isFinished).length;
  const verdict = round.reached === null ? h("span.muted", `${done}/${round.run_ids.length} finished`)
    : round.reached ? h("span.chip.st-succeeded", "reached")
      : h("span.chip.st-failed", round.diverged ? `short (${round.diverged} diverged)` : "short");
  return h("tr", { dataset: { round: round.round, d: round.d } },
    h("td.num", String(round.round)), h("td.num", fmtInt(round.d)), h("td.num", round.mean === null ? "–" : fmtPct(round.mean)),
    h("td.num", `${round.n}/${round.run_ids.length}`), h("td", verdict));
}

function searchGroupNode(group, index, fields, runsById) {
  const search = group.search;
  const label = groupLabel(group, fields);
  const [lo, hi] = search.bracket || [null, null];
  const reached = group.d_int90 !== null && group.d_int90 !== undefined;
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
      ["Round", "d", "Mean test acc", "Seeds", "vs threshold"].map((t, i) => h(`th${i < 4 ? ".num" : ""}`, t)))),
    h("tbody", (search.rounds || []).map((r) => roundRow(r, runsById))))));
}

/** The panel: { node, update({ summary, runsById }), destroy() }. */
export function searchRoundsPanel(experimentId) {
  const chart = h("div.chart", { dataset: { chart: "search-rounds" } });
  const groupsBox = h("div.search-groups");
  const filename = `experiment-${experimentId}-search-rounds`;
  const node = h("div.panel", { dataset: { section: "search" } },
    h("div.panel-head", h("h2", "Search for d_int90"),
      h("span.faint", "each round evaluates one d with every seed; filled: the mean reached the threshold, hollow: it fell short; band: the bracket (lo, hi]"),
      h("div.actions", pngButton(() => chart, filename))),
    h("div.grid2", chart, groupsBox));

  async function update({ summary, runsById }) {
    const fields = summary?.fields || [];
    const groups = (summary?.groups || []).filter((g) => g.search);
    groupsBox.replaceChildren(...(groups.length ? groups.map((g) => searchGroupNode(g, summary.groups.indexOf(g), fields, runsById))
      : [h("p.muted", "The search state appears with its first round.")]));
    if (!groups.some((g) => (g.search.rounds || []).length)) { emptyChart(chart, "No rounds yet."); return; }
    const fig = roundsFigure(summary);
    await react(chart, fig.traces, fig.layout, plotConfig(filename));
  }

  return { node, update, destroy() { purge(chart); } };
}
