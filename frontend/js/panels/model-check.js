// "Check on a worker": the run's model file sent back to the lab (POST /api/models/evaluate), rebuilt by a
// worker from its seed and trained tensors, and its test accuracy set beside the one the run recorded.

import { ApiError, api } from "../api.js";
import { fmtPct, h, setText } from "../dom.js";

const POLL_MS = 1000;

function verdict(evaluation) {
  const result = evaluation.result;
  if (evaluation.status === "failed") return [`refused: ${evaluation.error}`, "failed"];
  const same = result.test_acc === result.recorded_test_acc;
  return [`${evaluation.worker} rebuilt it on ${result.device}: ${fmtPct(result.test_acc)} ` +
    (same ? "— the recorded accuracy, exactly" : `against ${fmtPct(result.recorded_test_acc)} recorded`),
  same ? "reproduced" : "differs"];
}

/** The button and its answer: { node }. The node is kept across the cards' repaints. */
export function modelCheck(runId) {
  const answer = h("span.faint", { dataset: { modelCheck: "" } });
  const button = h("button.small", { type: "button", dataset: { action: "check-model" },
    title: "Send the model file to the lab: a worker rebuilds the network from the seed and measures its test accuracy",
    onclick: check }, "Check on a worker");

  async function check() {
    button.disabled = true;
    setText(answer, " queued…");
    answer.dataset.modelCheck = "queued";
    try {
      const file = await (await fetch(`/api/runs/${runId}/model`)).blob();
      let evaluation = await api("/api/models/evaluate", { method: "POST", body: file });
      while (evaluation.status === "queued" || evaluation.status === "running") {
        setText(answer, ` ${evaluation.status}…`);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        evaluation = await api(evaluation.url);
      }
      const [text, state] = verdict(evaluation);
      setText(answer, ` ${text}`);
      answer.dataset.modelCheck = state;
    } catch (err) {
      setText(answer, ` ${err instanceof ApiError ? err.message : String(err)}`);
      answer.dataset.modelCheck = "error";
    } finally {
      button.disabled = false;
    }
  }

  return { node: h("div.model-check", button, answer) };
}
