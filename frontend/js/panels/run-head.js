// The run page's head: the run's status (and whether the page is live), its experiment and role, and
// its actions: cancel, retry, queue the follow-up with P drawn from its trained P, clone, archive, delete.

import { api } from "../api.js";
import { chip, clear, h, setText, toast, updateChip } from "../dom.js";
import { phaseText } from "../phase.js";
import { isFinished, isRetryable } from "../statuses.js";

/** What the page is doing for a run that is not finished, in words. */
function liveText(run, liveState, pollSeconds) {
  if (isFinished(run.status)) return "";
  if (run.cancel_requested) return "cancel requested…";
  if (run.status !== "running") return "waiting for a worker";
  const how = liveState === "polling" ? `updated every ${pollSeconds} s (no event stream)` : "live";
  return `${how}${phaseText(run.progress) ? ` · ${phaseText(run.progress)}` : ""}`;
}

/**
 * The head: { node, update(run, liveState) }.
 * onRun(run): the API answered an action with the run; onRetried(): queued again; hasTrainedP(): its trained P is recorded.
 */
export function runHead(initial, { onRun, onRetried, hasTrainedP, pollSeconds }) {
  let run = initial;
  const statusChip = chip(run.status);
  const liveTag = h("span.muted");
  const actions = h("div.actions");
  const archivedTag = h("span.tag.hidden", { title: "Hidden from the runs list" }, "archived");
  const node = h("div.page-head", h("h1", `Run #${run.id}`), statusChip, liveTag,
    run.experiment_id ? h("a", { href: `#/experiments/${run.experiment_id}` }, `experiment #${run.experiment_id}`) : null,
    run.role === "baseline" ? h("span.tag.role-baseline", "baseline") : null, archivedTag, actions);

  const act = async (action) => {
    try {
      onRun(await api(`/api/runs/${run.id}/${action}`, { method: "POST" }));
      toast(action === "cancel" ? "Cancel requested" : "Queued again");
      if (action === "retry") onRetried();
    } catch (err) {
      toast(err.message, "error", 6000);
    }
  };

  const followUp = async () => {
    const config = { ...run.config, p_init: `from_run:${run.id}`, train_p: false };
    try {
      const created = await api("/api/runs", { method: "POST", body: config });
      toast(`Queued run #${created.id} with P drawn from run #${run.id}'s trained P`);
      location.hash = `#/runs/${created.id}`;
    } catch (err) {
      toast(err.message, "error", 8000);
    }
  };

  const toggleArchived = async () => {
    try {
      onRun(await api(`/api/runs/${run.id}`, { method: "PATCH", body: { archived: !run.archived } }));
      toast(run.archived ? "Archived: hidden from the runs list" : "Unarchived");
    } catch (err) {
      toast(err.message, "error", 6000);
    }
  };

  const deleteRun = async () => {
    if (!confirm(`Delete run #${run.id} with its curves and distributions? This cannot be undone.`)) return;
    try {
      await api(`/api/runs/${run.id}`, { method: "DELETE" });
    } catch (err) {
      toast(err.message, "error", 8000);
      return;
    }
    toast(`Run #${run.id} deleted`);
    location.hash = run.experiment_id ? `#/experiments/${run.experiment_id}` : "#/runs";
  };

  const followUpButton = () => {
    const trained = hasTrainedP();
    return h("button.primary", {
      dataset: { action: "follow-up" }, disabled: !trained, onclick: followUp,
      title: trained ? `Queue the same run with p_init = from_run:${run.id}: each block of P drawn with the statistics of this run's trained P (and P itself fixed)`
        : "Available once this run's trained P has been recorded",
    }, "Queue follow-up: P from trained distribution");
  };

  const paintActions = () => {
    clear(actions);
    if (!isFinished(run.status) && !run.cancel_requested) {
      actions.append(h("button.danger", { dataset: { action: "cancel" }, onclick: () => act("cancel") }, "Cancel run"));
    }
    if (isRetryable(run.status)) actions.append(h("button", { dataset: { action: "retry" }, onclick: () => act("retry") }, "Retry"));
    if (run.config?.train_p && run.status === "succeeded") actions.append(followUpButton());
    actions.append(h("a.btn", { href: `#/new?clone_run=${run.id}`, title: "Open the experiment form with this run's config" }, "Clone into form"));
    actions.append(h("button", {
      dataset: { action: "archive" }, onclick: toggleArchived,
      title: run.archived ? "Show this run in the runs list again" : "Hide this run from the runs list (nothing is deleted)",
    }, run.archived ? "Unarchive" : "Archive"));
    // A run is deleted once finished: its worker no longer writes to it (the API refuses otherwise).
    const deletable = isFinished(run.status);
    actions.append(h("button.danger", {
      dataset: { action: "delete" }, onclick: deleteRun, disabled: !deletable,
      title: deletable ? "Delete this run with its curves and distributions"
        : run.cancel_requested ? "Deletable once it has stopped" : "Cancel it first: a queued or running run cannot be deleted",
    }, "Delete"));
  };

  return {
    node,
    update(next, liveState) {
      run = next;
      updateChip(statusChip, run.status);
      setText(liveTag, liveState === "ended" ? "" : liveText(run, liveState, pollSeconds));
      archivedTag.classList.toggle("hidden", !run.archived);
      paintActions();
    },
  };
}
