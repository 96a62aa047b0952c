// The run page's cards: where training is (epoch, step), its latest metrics, the sizes (D, k, d, D / d),
// its duration (counted here while it runs: the event stream carries none) and its attempt.

import { fmtDuration, fmtFileSize, fmtInt, fmtNum, fmtPct, h, setText } from "../dom.js";
import { modelCheck } from "./model-check.js";

const CARDS = [["epoch", "Epoch"], ["step", "Step"], ["train_loss", "Train loss"], ["train_acc", "Train acc"],
  ["test_acc", "Test acc"], ["best", "Best test acc"], ["D", "D"], ["k", "k"], ["d", "d"],
  ["ratio", "D / d"], ["model", "Model file"], ["duration", "Duration"], ["attempt", "Attempt"]];

/** A run's duration so far: from its start while it runs, as recorded once it has finished. */
export function liveDuration(run) {
  if (run.status === "running" && run.started_at) return Math.max(0, (Date.now() - Date.parse(run.started_at)) / 1000);
  return run.duration_seconds;
}

/** The model file's size against θ_D's, its download (GET /api/runs/{id}/model) and its check on a worker,
 * once the run has one. */
function paintModel(box, run, check) {
  const f = run.final_metrics || {};
  if (typeof f.model_bytes !== "number") { setText(box, "–"); return; }
  box.replaceChildren(
    h("a", { href: `/api/runs/${run.id}/model`, download: "", dataset: { action: "download-model" },
      title: "Config, seed and trained tensors: `idlab evaluate FILE` rebuilds the network and reproduces its test accuracy" },
      fmtFileSize(f.model_bytes)),
    h("span.faint", { dataset: { compression: "" } },
      ` vs ${fmtFileSize(f.network_bytes)} · ${fmtNum(f.compression, 3)}× smaller`),
    check.node);
}

/** The cards: { node, update(run), destroy() }. */
export function runCards() {
  const values = Object.fromEntries(CARDS.map(([key]) => [key, h("div.v")]));
  const node = h("div.cards", CARDS.map(([key, label]) => h("div.card", h("div.k", label), values[key])));
  let run = null, check = null;
  const ticker = setInterval(() => { if (run?.status === "running") setText(values.duration, fmtDuration(liveDuration(run))); }, 1000);

  function update(next) {
    run = next;
    const p = run.progress || {}, f = run.final_metrics || {};
    const latest = (key) => (typeof f[key] === "number" ? f[key] : p[key]);
    setText(values.epoch, p.epoch !== undefined || f.epochs !== undefined ? `${f.epochs ?? p.epoch} / ${run.config?.epochs ?? "?"}` : "–");
    setText(values.step, fmtNum(f.steps ?? p.step));
    setText(values.train_loss, fmtNum(latest("train_loss")));
    setText(values.train_acc, fmtPct(latest("train_acc")));
    setText(values.test_acc, fmtPct(latest("test_acc")));
    setText(values.best, fmtPct(f.best_test_acc));
    setText(values.D, fmtInt(run.D));
    setText(values.k, fmtInt(run.k));
    setText(values.d, fmtInt(run.d));
    setText(values.ratio, run.D && run.d ? `${fmtNum(run.D / run.d, 3)}×` : "–");
    setText(values.duration, fmtDuration(liveDuration(run)));
    setText(values.attempt, String(run.attempt ?? "–"));
    check = check || modelCheck(run.id);
    paintModel(values.model, run, check);
  }

  return { node, update, destroy() { clearInterval(ticker); } };
}
