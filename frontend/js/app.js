// idlab dashboard: a single-page app with hash routes.
//   #/runs[?status=…&experiment_id=…&config.<field>=…&limit=…&offset=…]   the runs table
//   #/runs/<id>                                                         one run
//   #/experiments                                                       the experiments
//   #/experiments/<id>                                                  one experiment
//   #/compare?runs=<id>,<id>,…                                          runs side by side (any experiments)
//   #/new[?clone_run=<id>|clone_experiment=<id>]                        a new experiment

import { api, getToken, setToken } from "./api.js";
import { loadPlotly } from "./charts.js";
import { clear, h, poller } from "./dom.js";
import { parseHash } from "./nav.js";
import { renderRunsPage } from "./runs.js";
import { renderRunPage } from "./run.js";
import { renderExperimentsPage } from "./experiments.js";
import { renderExperimentPage } from "./experiment.js";
import { renderComparePage } from "./compare.js";
import { renderNewPage } from "./new.js";
import { loadStatuses } from "./statuses.js";

const routes = [
  [/^\/runs\/(\d+)$/, (m, q, root) => renderRunPage(root, Number(m[1]), q), "runs"],
  [/^\/runs\/?$/, (m, q, root) => renderRunsPage(root, q), "runs"],
  [/^\/experiments\/(\d+)$/, (m, q, root) => renderExperimentPage(root, Number(m[1]), q), "experiments"],
  [/^\/experiments\/?$/, (m, q, root) => renderExperimentsPage(root, q), "experiments"],
  [/^\/new\/?$/, (m, q, root) => renderNewPage(root, q), "new"],
  [/^\/compare\/?$/, (m, q, root) => renderComparePage(root, q), "runs"],
];

let cleanup = null;
let navigation = 0;

async function route() {
  const token = ++navigation;
  if (cleanup) {
    try { cleanup(); } catch (err) { console.warn(err); }
    cleanup = null;
  }
  const { path, query } = parseHash();
  const root = clear(document.getElementById("app"));
  const match = routes.map(([re, render, nav]) => [re.exec(path), render, nav]).find(([m]) => m);
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", match?.[2] === a.dataset.nav));
  if (!match) {
    root.append(h("div.panel", h("h1", "Not found"), h("p", "No page at ", h("code", path), ". ", h("a", { href: "#/runs" }, "Back to the runs"))));
    return;
  }
  try {
    await loadStatuses();     // every page lists, filters or colours runs by the API's statuses (read once)
    if (token !== navigation) return;
    const result = await match[1](match[0], query, root);
    if (token !== navigation) { if (typeof result === "function") result(); return; }
    cleanup = typeof result === "function" ? result : null;
  } catch (err) {
    console.error(err);
    if (token === navigation) root.append(h("div.alert.error", { text: `This page failed to load: ${err.message}` }));
  }
}

function setupToken() {
  const input = document.getElementById("token");
  input.value = getToken();
  input.addEventListener("change", () => setToken(input.value.trim()));
}

function setupHealth() {
  const node = document.getElementById("health");
  const check = async () => {
    try {
      const health = await api("/api/health");
      const alive = health.workers_alive ?? (health.workers || []).filter((w) => w.alive).length;
      const degraded = health.status && health.status !== "ok";
      node.className = `health ${degraded ? "bad" : alive ? "ok" : "warn"}`;
      const busy = (health.workers || []).filter((w) => w.alive && w.current_run_id).length;
      node.replaceChildren(h("span.dot"), degraded ? `degraded` : `${alive} worker${alive === 1 ? "" : "s"}${alive ? ` · ${busy} busy` : ""}`);
      node.title = [`database: ${health.database?.ok ? "ok" : health.database?.detail || "?"}`,
        `broker: ${health.broker?.ok ? "ok" : health.broker?.detail || "?"}`,
        ...(health.workers || []).map((w) => `${w.name} (${w.device}) ${w.alive ? "alive" : "gone"}${w.current_batch?.length > 1 ? `, batch of ${w.current_batch.length} runs: ${w.current_batch.join(", ")}` : w.current_run_id ? `, run ${w.current_run_id}` : ""}`)].join("\n");
    } catch (err) {
      node.className = "health bad";
      node.replaceChildren(h("span.dot"), "server unreachable");
      node.title = err.message;
    }
  };
  check();
  poller(check, 10000);
}

/** plotly.js is big (its start-up alone takes a few hundred ms): once the first page has settled,
 * load it in idle time, so that opening a run or an experiment from the table draws at once. */
function preloadCharts() {
  const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 0));
  setTimeout(() => idle(() => { if (!document.hidden) loadPlotly().catch(() => {}); }, { timeout: 5000 }), 1500);
}

window.addEventListener("hashchange", route);
setupToken();
setupHealth();
route().then(preloadCharts);
