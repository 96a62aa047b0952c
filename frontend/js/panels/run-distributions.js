// A run's distributions: histograms of P per feature block, θ_d and RFF's B, initial vs trained.

import { ApiError, api } from "../api.js";
import { purge } from "../charts.js";
import { h } from "../dom.js";
import { isFinished } from "../statuses.js";
import { blockLabel, histogramCell } from "./histograms.js";

function section(title, cells, first = false) {
  return [h("h3", first ? {} : { style: { marginTop: "12px" } }, title), h("div.hist-grid", cells.map((c) => c.cell))];
}

/** The panel: { node, load(run) → the distributions or null, data, destroy() }. */
export class RunDistributionsPanel {
  constructor() {
    this.data = null;
    this.cells = [];
    this.body = h("div", h("p.muted", "Loading…"));
    this.node = h("div.panel", { dataset: { section: "distributions" } },
      h("div.panel-head", h("h2", "Distributions of P and θ_d")), this.body);
  }

  async load(run) {
    let data;
    try {
      data = await api(`/api/runs/${run.id}/distributions`);
    } catch (err) {
      this.data = null;
      const message = err instanceof ApiError && err.status === 404
        ? (isFinished(run.status) ? "This run recorded no distributions (direct training, or it stopped before its projection was built)."
          : "Recorded when the run finishes: P per feature block and θ_d, at initialisation and after training.")
        : `Could not read the distributions: ${err.message}`;
      this.body.replaceChildren(h("p.muted", message));
      return null;
    }
    this.data = data;
    this.destroy();
    this.body.replaceChildren(...this.sections(run.id, data));
    await Promise.all(this.cells.map((c) => c.draw()));
    this.node.dataset.loaded = "true";
    return data;
  }

  sections(runId, data) {
    const cellsOf = (blocks, title, file) => {
      const cells = blocks.map(([name, block]) => histogramCell(title(name), block, file(name)));
      this.cells.push(...cells);
      return cells;
    };
    const pBlocks = Object.entries(data.P || {});
    const thetaBlocks = Object.entries(data.theta_d || {});
    const bBlocks = Object.entries(data.B || {});
    const sections = pBlocks.length
      ? section("P, per feature block (entries of the columns that multiply each block of φ(θ_d))",
        cellsOf(pBlocks, (name) => `P · ${blockLabel(name)}`, (name) => `run-${runId}-P-${name}`), true)
      : [h("p.muted", "No histogram of P: this projection keeps no explicit matrix.")];
    if (thetaBlocks.length) {
      sections.push(...section("θ_d, the trained intrinsic weights",
        cellsOf(thetaBlocks, (name) => (name === "theta_d" ? "θ_d" : name), () => `run-${runId}-theta_d`)));
    }
    if (bBlocks.length) {
      sections.push(...section("B, the random Fourier features' matrices (after training too with train_rff_b)",
        cellsOf(bBlocks, (name) => (name === "B" ? "B" : `B · ${name}`), () => `run-${runId}-B`)));
    }
    return sections;
  }

  destroy() {
    this.cells.forEach((c) => purge(c.div));
    this.cells = [];
  }
}
