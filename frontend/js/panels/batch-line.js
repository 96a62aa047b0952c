// The runs a run trained with: one computation on one device (a worker's batch), each linked.

import { api } from "../api.js";
import { clear, h, setText } from "../dom.js";

/** The line: { node, update(run) } (re-reads the batch only when the run's batch changed). */
export function batchLine() {
  const node = h("div.batch-line.muted.hidden", { dataset: { section: "batch" } });
  let shown = null;

  async function update(run) {
    const batchId = run.batch_id || null;
    if (batchId === shown) return;
    shown = batchId;
    node.classList.toggle("hidden", !batchId);
    if (!batchId) { clear(node); return; }
    try {
      const page = await api("/api/runs", {
        query: { batch_id: batchId, sort: "id", limit: 256, archived: "all", config_fields: ["d", "seed", "projection"] },
      });
      if (shown !== batchId) return;
      const mates = page.items.filter((r) => r.id !== run.id);
      node.replaceChildren(
        h("span", `Trained in one batch of ${page.total} runs (batch ${batchId.slice(0, 8)}) with `),
        ...mates.flatMap((r, i) => [i ? ", " : "", h("a", { href: `#/runs/${r.id}`, dataset: { run: String(r.id) },
          title: `${r.config.projection}, d = ${r.config.d}, seed ${r.config.seed} · ${r.status}` },
        `#${r.id}`), h("span.faint", ` (d=${r.config.d}, seed ${r.config.seed})`)]));
    } catch (err) {
      setText(node, `Trained in batch ${batchId.slice(0, 8)} (its runs could not be listed: ${err.message})`);
    }
  }

  return { node, update };
}
