// plotly.js, served by the backend from the installed plotly package (/vendor/plotly.min.js),
// loaded on the first page that draws a chart. Shared layout and config for every chart.

import { h } from "./dom.js";

let loading = null;

export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading && window.plotlyLoading) {
    loading = window.plotlyLoading;           // started by js/preload.js for a chart page opened by URL
    window.plotlyLoading = null;
    loading.catch(() => { loading = null; });
  }
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/vendor/plotly.min.js";
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { loading = null; reject(new Error("plotly.js could not be loaded from /vendor/plotly.min.js")); };
      document.head.append(script);
    });
  }
  return loading;
}

const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", Arial, sans-serif';

export function layout(overrides = {}) {
  const axis = { gridcolor: "#eef0f3", zerolinecolor: "#d0d5dd", linecolor: "#d0d5dd", ticks: "outside", tickcolor: "#d0d5dd", automargin: true };
  const base = {
    font: { family: FONT, size: 11.5, color: "#344054" },
    paper_bgcolor: "#fff",
    plot_bgcolor: "#fff",
    margin: { l: 56, r: 14, t: 30, b: 42 },
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom", font: { size: 11 } },
    hovermode: "closest",
    hoverlabel: { font: { family: FONT, size: 11.5 } },
    uirevision: "keep",   // zoom and legend choices survive every update
    xaxis: { ...axis, ...(overrides.xaxis || {}) },
    yaxis: { ...axis, ...(overrides.yaxis || {}) },
  };
  const { xaxis, yaxis, ...rest } = overrides;
  return { ...base, ...rest };
}

export function config(filename) {
  return {
    displaylogo: false,
    responsive: true,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "sendDataToCloud"],
    toImageButtonOptions: { format: "png", filename, scale: 2 },
  };
}

/** A PNG download button for the chart in `gd`. */
export function pngButton(getDiv, filename) {
  return h("button.small", {
    title: "Download this chart as PNG",
    onclick: async () => {
      const Plotly = await loadPlotly();
      const gd = getDiv();
      if (gd && gd.data) Plotly.downloadImage(gd, { format: "png", filename, scale: 2, width: gd.clientWidth, height: gd.clientHeight });
    },
  }, "PNG");
}

export function emptyChart(node, message) {
  if (window.Plotly && node.data) window.Plotly.purge(node);
  node.replaceChildren(h("div.chart-empty", { text: message }));
}

export function purge(node) {
  if (window.Plotly && node && node.data) window.Plotly.purge(node);
}

/** Draw (or redraw in place) a chart in `div`, replacing a "no data" message if one is shown. */
export async function react(div, traces, chartLayout, chartConfig) {
  const Plotly = await loadPlotly();
  if (!div.isConnected) return;           // its page was left while plotly.js or the data loaded
  if (!div.data) div.replaceChildren();
  await Plotly.react(div, traces, chartLayout, chartConfig);
}

/** A PNG button with its own label ("PNG std"), for panels with several charts. */
export function labelledPngButton(getDiv, filename, label) {
  const button = pngButton(getDiv, filename);
  button.textContent = label;
  return button;
}
