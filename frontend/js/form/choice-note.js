// A note under a form field that describes the value(s) chosen in it, repainted when the choice changes.

import { h, setText } from "../dom.js";

/**
 * { node, paint() }: under `input`, `describe(name)` of every chosen name (a swept field chooses several),
 * joined by " · ". `dataset` marks the node for tests; nothing is painted while `ready()` is false.
 */
export function choiceNote(input, dataset, describe, ready = () => true) {
  const node = h("div.help", { dataset });
  function paint() {
    if (!input || !ready()) return;
    let chosen = [];
    try { const r = input.read(); chosen = input.swept ? r.values : [r.value]; } catch { /* nothing chosen yet */ }
    setText(node, chosen.map(describe).join(" · "));
  }
  if (input) {
    input.node.append(node);
    input.node.addEventListener("change", paint);
  }
  paint();
  return { node, paint };
}
