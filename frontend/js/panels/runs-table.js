// The runs table: server-side filters and pages, live progress by polling, cancel and retry.
// Rows are keyed by run id and updated cell by cell, so a poll of 500 runs touches only what changed.
// Used by the runs page (every run) and the experiment page (its runs, to tick for the overlay).

import { api, experimentName } from "../api.js";
import { chip, clear, fmtDuration, fmtNum, fmtPct, fmtTime, h, setText, toast, updateChip } from "../dom.js";
import { live } from "../live.js";
import { replaceQuery } from "../nav.js";
import { phaseText } from "../phase.js";
import { runConfigSchema } from "../schema.js";
import { isFinished, isRetryable, runStatuses } from "../statuses.js";
import { tagInput, tagLinks } from "./tags-notes.js";

const POLL_MS = 2000;
const PAGE_SIZES = [50, 100, 250, 500, 1000];
// Columns the server sorts across all pages (GET /api/runs?sort=…); the others sort the page shown.
const SERVER_SORTS = {
  id: "id", created: "created_at", status: "status", experiment: "experiment_id", role: "role", d: "d",
  augmentation: "config.augmentation", seed: "config.seed",
  loss: "metrics.train_loss", train_acc: "metrics.train_acc", test_acc: "metrics.test_acc", duration: "duration",
};

// The config fields the columns read: the list asks for these alone, not every run's whole config.
const CONFIG_FIELDS = ["dataset", "model", "method", "projection", "augmentation", "d", "seed", "epochs"];
const cfg = (run) => run.config || {};
const prog = (run) => run.progress || {};
const fin = (run) => run.final_metrics || {};
const latest = (run, key) => (typeof fin(run)[key] === "number" ? fin(run)[key] : prog(run)[key]);

function progressFraction(run) {
  if (run.status === "succeeded") return 1;
  const epochs = cfg(run).epochs;
  const epoch = prog(run).epoch;
  if (!epochs || !epoch) return 0;
  return Math.min(1, Math.max(0, (epoch - 0.5) / epochs));
}

/**
 * Column definitions: a header, the cell's static content (cloned from one template row), how to
 * update it from a run, and a sort value. Clicks and ticks are handled once, on the table body.
 */
function columns({ selectable, selectTitle, showExperiment, selection }) {
  const cols = [];
  if (selectable) {
    cols.push({
      key: "select", label: "",
      tpl: () => h("input", { type: "checkbox", title: selectTitle || "Overlay this run's curves" }),
      update: (td, run) => { const box = td.firstChild; const on = selection.has(run.id); if (box.checked !== on) box.checked = on; },
    });
  }
  cols.push(
    { key: "id", label: "Run", sort: (r) => r.id, tpl: () => h("a"),
      update: (td, run) => { const a = td.firstChild; if (a.dataset.id !== String(run.id)) { a.dataset.id = run.id; a.href = `#/runs/${run.id}`; a.textContent = `#${run.id}`; } } },
    { key: "status", label: "Status", sort: (r) => runStatuses().indexOf(r.status), tpl: () => chip("queued"),
      update: (td, run) => {
        updateChip(td.firstChild, run.status);
        const title = run.cancel_requested && !isFinished(run.status) ? "cancel requested" : (run.error || "");
        if (td.title !== title) td.title = title;
      } },
  );
  if (showExperiment) {
    cols.push({
      key: "experiment", label: "Experiment", sort: (r) => r.experiment_id ?? -1, tpl: () => h("a"),
      update: (td, run) => {
        const a = td.firstChild;
        const id = run.experiment_id ? String(run.experiment_id) : "";
        if (a.dataset.id === id) return;
        a.dataset.id = id;
        if (!id) { a.removeAttribute("href"); a.textContent = "–"; a.className = "faint"; return; }
        a.className = "";
        a.href = `#/experiments/${id}`;
        a.textContent = `#${id}`;
        experimentName(run.experiment_id).then((name) => { if (name && a.dataset.id === id) a.textContent = `#${id} ${name}`; });
      },
    });
  }
  cols.push(
    { key: "role", label: "Role", sort: (r) => r.role, tpl: () => h("span"),
      update: (td, run) => {
        const span = td.firstChild;
        const cls = run.role === "baseline" ? "tag role-baseline" : "faint";
        if (span.className !== cls) span.className = cls;
        setText(span, run.role || "member");
      } },
    { key: "model", label: "Data · model", sort: (r) => `${cfg(r).dataset}${cfg(r).model}`, text: (r) => `${cfg(r).dataset} · ${cfg(r).model}` },
    { key: "projection", label: "Method", sort: (r) => `${cfg(r).method}${cfg(r).projection}`, text: (r) => (cfg(r).method === "direct" ? "direct" : cfg(r).projection) },
    { key: "augmentation", label: "Aug.", sort: (r) => cfg(r).augmentation, text: (r) => (cfg(r).method === "direct" ? "–" : cfg(r).augmentation) },
    { key: "d", label: "d", num: true, sort: (r) => r.d ?? cfg(r).d, text: (r) => fmtNum(r.d ?? cfg(r).d) },
    { key: "seed", label: "Seed", num: true, sort: (r) => cfg(r).seed, text: (r) => String(cfg(r).seed ?? "–") },
    {
      key: "progress", label: "Progress", sort: (r) => prog(r).step ?? -1,
      tpl: () => h("span", h("span.progress", h("span")), h("span.mono")),
      update: (td, run) => {
        const bar = td.firstChild.firstChild.firstChild;
        const width = `${Math.round(100 * progressFraction(run))}%`;
        if (bar.style.width !== width) bar.style.width = width;
        const p = prog(run);
        const phase = run.status === "running" && p.phase && p.phase !== "training" ? ` · ${phaseText(p)}` : "";
        setText(td.firstChild.lastChild, p.step !== undefined ? `ep ${p.epoch ?? "?"}/${cfg(run).epochs ?? "?"} · ${fmtNum(p.step)}${phase}`
          : run.status === "queued" ? "waiting" : run.status === "running" && p.phase ? phaseText(p) : "");
      },
    },
    { key: "loss", label: "Loss", num: true, sort: (r) => latest(r, "train_loss") ?? Infinity, text: (r) => fmtNum(latest(r, "train_loss")) },
    { key: "train_acc", label: "Train acc", num: true, sort: (r) => latest(r, "train_acc") ?? -1, text: (r) => fmtPct(latest(r, "train_acc")) },
    { key: "test_acc", label: "Test acc", num: true, sort: (r) => latest(r, "test_acc") ?? -1, text: (r) => fmtPct(latest(r, "test_acc")) },
    { key: "duration", label: "Duration", num: true, sort: (r) => r.duration_seconds ?? -1, text: (r) => fmtDuration(r.duration_seconds) },
    { key: "created", label: "Created", sort: (r) => r.created_at, text: (r) => fmtTime(r.created_at) },
    { key: "tags", label: "Tags", sort: (r) => (r.tags || []).join(" ").toLowerCase(), tpl: () => h("span.tag-cell"),
      update: (td, run) => {
        const box = td.firstChild;
        const shown = JSON.stringify(run.tags || []);
        if (box.dataset.tags !== shown) { box.dataset.tags = shown; box.replaceChildren(...tagLinks(run.tags, "/runs")); }
      } },
    {
      key: "actions", label: "", tpl: () => h("div.row-actions"),
      update: (td, run) => {
        const box = td.firstChild;
        const want = run.status === "queued" || run.status === "running" ? (run.cancel_requested ? "cancelling" : "cancel")
          : isRetryable(run.status) ? "retry" : "finished";
        if (box.dataset.state === want) return;
        box.dataset.state = want;
        clear(box);
        if (want === "cancel") box.append(h("button.small.danger", { type: "button", dataset: { action: "cancel" } }, "Cancel"));
        else if (want === "cancelling") box.append(h("span.faint", "cancelling…"));
        else if (want === "retry") box.append(h("button.small", { type: "button", dataset: { action: "retry" } }, "Retry"));
        if (want === "retry" || want === "finished") {
          box.append(h("button.small.danger", { type: "button", dataset: { action: "delete" }, title: "Delete this run with its curves" }, "Delete"));
        }
      },
    },
  );
  return cols;
}

/**
 * A live table of runs.
 * options: filters {status:[], experiment_id, role, config:{field:[values]}, archived, tag:[]}, limit, offset, sort,
 *          selectable, selectTitle (the tick's tooltip), showExperiment, syncUrl, showFilters, onRuns(runs, changed),
 *          onSelection(ids)
 */
export class RunTable {
  constructor(options = {}) {
    this.options = options;
    this.filters = { status: [], experiment_id: null, role: null, config: {}, archived: "false", tag: [], ...(options.filters || {}) };
    this.limit = options.limit || 100;
    this.offset = options.offset || 0;
    this.sortKey = options.sortKey || "id";
    this.sortDir = options.sortDir || "desc";
    this.rows = new Map();           // id → {tr, cells, run}
    this.selection = options.selection instanceof Set ? options.selection : new Set(options.selection || []);
    this.total = 0;
    this.sequence = 0;
    this.cols = columns({ selectable: options.selectable, selectTitle: options.selectTitle, showExperiment: options.showExperiment !== false, selection: this.selection });
    this.rowTemplate = h("tr", this.cols.map((col) => h(`td${col.num ? ".num" : ""}`, { dataset: { col: col.key } }, col.tpl ? col.tpl() : null)));
    this.node = h("div.run-table");
    this.build();
  }

  build() {
    this.toolbar = h("div.toolbar");
    if (this.options.showFilters !== false) this.buildFilters();
    this.summary = h("span.muted");
    this.pageInfo = h("span.muted.nowrap");
    this.prev = h("button.small", { onclick: () => this.page(-1), title: "Previous page" }, "‹ Prev");
    this.next = h("button.small", { onclick: () => this.page(1), title: "Next page" }, "Next ›");
    const size = h("select", { title: "Runs per page", onchange: (e) => { this.limit = Number(e.target.value); this.offset = 0; this.refresh(true); } },
      PAGE_SIZES.map((n) => h("option", { value: n, selected: n === this.limit }, `${n} / page`)));
    if (!PAGE_SIZES.includes(this.limit)) size.prepend(h("option", { value: this.limit, selected: true }, `${this.limit} / page`));
    this.toolbar.append(h("div.pager", this.pageInfo, this.prev, this.next, size));

    this.thead = h("thead", h("tr", this.cols.map((col) => {
      const th = h(`th${col.num ? ".num" : ""}${col.sort ? ".sortable" : ""}`, { dataset: { key: col.key } }, col.label);
      if (col.sort) th.addEventListener("click", () => this.sortBy(col.key));
      return th;
    })));
    this.tbody = h("tbody");
    // One listener for every row's buttons and checkboxes.
    this.tbody.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      const tr = button?.closest("tr[data-run-id]");
      if (button && tr) this.action(Number(tr.dataset.runId), button.dataset.action);
    });
    this.tbody.addEventListener("change", (event) => {
      const box = event.target;
      const tr = box.closest("tr[data-run-id]");
      if (!tr || box.type !== "checkbox") return;
      const id = Number(tr.dataset.runId);
      if (box.checked) this.selection.add(id); else this.selection.delete(id);
      tr.classList.toggle("selected", box.checked);
      this.options.onSelection?.([...this.selection]);
    });
    this.empty = h("div.pad.muted.hidden", "No runs match. ", h("a", { href: "#/new" }, "Start an experiment"), ".");
    this.error = h("div.alert.error.hidden");
    this.node.append(this.toolbar, this.error,
      h("div.table-wrap.runs-scroll", h("table.data.runs", this.thead, this.tbody)), this.empty);
    this.markSort();
  }

  buildFilters() {
    const statusBox = h("div.status-toggle", { role: "group", "aria-label": "Filter by status" });
    for (const status of runStatuses()) {
      const button = h("button", { dataset: { status }, onclick: () => {
        const set = new Set(this.filters.status);
        if (set.has(status)) set.delete(status); else set.add(status);
        this.filters.status = runStatuses().filter((s) => set.has(s));
        this.offset = 0;
        this.paintFilters();
        this.refresh(true);
      } }, status);
      statusBox.append(button);
    }
    this.statusBox = statusBox;
    const experiment = h("input", { type: "number", min: 1, placeholder: "experiment id", title: "Only the runs of this experiment", style: { width: "120px" }, value: this.filters.experiment_id ?? "",
      onchange: (e) => { this.filters.experiment_id = e.target.value ? Number(e.target.value) : null; this.offset = 0; this.refresh(true); } });
    const role = h("select", { title: "Role", onchange: (e) => { this.filters.role = e.target.value || null; this.offset = 0; this.refresh(true); } },
      h("option", { value: "" }, "any role"), h("option", { value: "member", selected: this.filters.role === "member" }, "members"),
      h("option", { value: "baseline", selected: this.filters.role === "baseline" }, "baselines"));
    this.configChips = h("span.toolbar");
    this.configChips.style.margin = "0";
    const fieldSelect = h("select", { title: "Filter on a run-config field" }, h("option", { value: "" }, "config field…"));
    const valueBox = h("span");
    const add = h("button.small", { onclick: () => {
      const name = fieldSelect.value;
      const input = valueBox.firstChild;
      if (!name || !input || input.value === "") return;
      const values = this.filters.config[name] || [];
      this.filters.config[name] = [...new Set([...values, input.value])];
      this.offset = 0;
      this.paintFilters();
      this.refresh(true);
    } }, "Add filter");
    runConfigSchema().then(({ fields }) => {
      this.schemaFields = Object.fromEntries(fields.map((f) => [f.name, f]));
      for (const f of fields) if (f.kind !== "list") fieldSelect.append(h("option", { value: f.name }, f.name));
    }).catch(() => {});
    const paintValue = () => {
      const f = this.schemaFields?.[fieldSelect.value];
      let input;
      if (f && (f.kind === "enum" || f.kind === "bool")) {
        input = h("select", (f.kind === "bool" ? ["true", "false"] : f.enum).map((v) => h("option", { value: v }, v)));
      } else {
        input = h("input", { type: "text", placeholder: "value", style: { width: "90px" } });
        input.addEventListener("keydown", (e) => { if (e.key === "Enter") add.click(); });
      }
      valueBox.replaceChildren(input);
    };
    fieldSelect.addEventListener("change", paintValue);
    paintValue();
    // Archived runs (and the runs of archived experiments) are left out unless this is ticked.
    const archived = h("label.nowrap", { title: "Also show archived runs and the runs of archived experiments" },
      h("input", { type: "checkbox", dataset: { filter: "archived" }, checked: this.filters.archived === "all",
        onchange: (e) => { this.filters.archived = e.target.checked ? "all" : "false"; this.offset = 0; this.refresh(true); } }),
      " show archived");
    this.toolbar.append(statusBox, h("span.sep"), experiment, role, archived, h("span.sep"), fieldSelect, valueBox, add, this.configChips,
      h("span.sep"), ...this.buildTagFilter());
    this.paintFilters();
  }

  /** The tag filter: runs holding every tag listed (typed, or a tag clicked in the table). */
  buildTagFilter() {
    const addTag = (tag) => {
      if (this.filters.tag.some((t) => t.toLowerCase() === tag.toLowerCase())) return;
      this.filters.tag = [...this.filters.tag, tag];
      this.offset = 0;
      this.paintFilters();
      this.refresh(true);
    };
    // A tag clicked in the table narrows this table, rather than opening a new list.
    this.node.addEventListener("click", (event) => {
      const link = event.target.closest("a.tag-link[data-tag]");
      if (!link || !this.node.contains(link)) return;
      event.preventDefault();
      addTag(link.dataset.tag);
    });
    this.tagChips = h("span.toolbar");
    this.tagChips.style.margin = "0";
    const input = tagInput({ placeholder: "tag…", title: "Only the runs holding this tag (Enter; several: all of them)", dataset: { filter: "tag" }, onTag: addTag });
    return [input, this.tagChips];
  }

  paintTagFilter() {
    this.tagChips.replaceChildren(...this.filters.tag.map((tag) => h("span.filter-chip", { dataset: { tagFilter: tag } }, `tag: ${tag}`,
      h("button", { title: "Remove this filter", onclick: () => {
        this.filters.tag = this.filters.tag.filter((t) => t !== tag);
        this.offset = 0;
        this.paintFilters();
        this.refresh(true);
      } }, "×"))));
  }

  paintFilters() {
    if (!this.statusBox) return;
    for (const button of this.statusBox.children) button.classList.toggle("on", this.filters.status.includes(button.dataset.status));
    this.paintTagFilter();
    clear(this.configChips);
    for (const [name, values] of Object.entries(this.filters.config)) {
      for (const value of values) {
        this.configChips.append(h("span.filter-chip", `${name} = ${value}`, h("button", { title: "Remove this filter", onclick: () => {
          this.filters.config[name] = values.filter((v) => v !== value);
          if (!this.filters.config[name].length) delete this.filters.config[name];
          this.offset = 0;
          this.paintFilters();
          this.refresh(true);
        } }, "×")));
      }
    }
  }

  query() {
    const q = {
      limit: this.limit, offset: this.offset, status: this.filters.status, experiment_id: this.filters.experiment_id,
      role: this.filters.role, config_fields: CONFIG_FIELDS, archived: this.filters.archived, tag: this.filters.tag,
    };
    if (SERVER_SORTS[this.sortKey]) q.sort = `${this.sortDir === "desc" ? "-" : ""}${SERVER_SORTS[this.sortKey]}`;
    for (const [name, values] of Object.entries(this.filters.config)) q[`config.${name}`] = values;
    return q;
  }

  syncUrl() {
    if (!this.options.syncUrl) return;
    const params = new URLSearchParams();
    for (const s of this.filters.status) params.append("status", s);
    if (this.filters.experiment_id) params.set("experiment_id", this.filters.experiment_id);
    if (this.filters.role) params.set("role", this.filters.role);
    if (this.filters.archived !== "false") params.set("archived", this.filters.archived);
    for (const tag of this.filters.tag) params.append("tag", tag);
    for (const [name, values] of Object.entries(this.filters.config)) for (const v of values) params.append(`config.${name}`, v);
    if (this.limit !== 100) params.set("limit", this.limit);
    if (this.offset) params.set("offset", this.offset);
    if (this.sortKey !== "id" || this.sortDir !== "desc") params.set("sort", `${this.sortDir === "desc" ? "-" : ""}${this.sortKey}`);
    replaceQuery(params);
  }

  /** Draw the first page, then keep it live (the runs list has no event stream: it polls). */
  start() {
    this.live = live({ poll: async () => { await this.refresh(false); return false; }, pollMs: POLL_MS });
    return this.refresh(true);
  }

  stop() { this.live?.close(); }

  /** Tick the rows of the runs chosen elsewhere (the experiment page's default overlay). */
  paintSelection() {
    for (const [id, row] of this.rows) {
      row.tr.classList.toggle("selected", this.selection.has(id));
      this.updateRow(row, row.run);
    }
  }

  async refresh(userAction) {
    const sequence = ++this.sequence;
    if (userAction) this.syncUrl();
    let page;
    try {
      page = await api("/api/runs", { query: this.query() });
    } catch (err) {
      if (sequence !== this.sequence) return;
      this.error.textContent = `Could not load the runs: ${err.message}`;
      this.error.classList.remove("hidden");
      return;
    }
    if (sequence !== this.sequence) return;   // a newer request was sent meanwhile
    this.error.classList.add("hidden");
    const started = performance.now();
    this.render(page);
    performance.measure("idlab:runs-table-render", { start: started, end: performance.now() });
  }

  render(page) {
    const runs = page.items || [];
    this.total = page.total ?? runs.length;
    const changed = [];
    const seen = new Set();
    for (const run of runs) {
      seen.add(run.id);
      let row = this.rows.get(run.id);
      if (!row) {
        row = this.makeRow(run);
        this.rows.set(run.id, row);
        changed.push(run);
      } else if (row.run.status !== run.status) changed.push(run);
      if (row.run !== run) this.updateRow(row, run);
    }
    for (const [id, row] of this.rows) if (!seen.has(id)) { row.tr.remove(); this.rows.delete(id); }
    const ordered = this.clientSort(runs);
    // Reorder only when needed: appending an already-placed node moves it.
    let cursor = this.tbody.firstChild;
    for (const run of ordered) {
      const tr = this.rows.get(run.id).tr;
      if (tr !== cursor) this.tbody.insertBefore(tr, cursor);
      else cursor = cursor.nextSibling;
    }
    this.empty.classList.toggle("hidden", runs.length > 0);
    const from = runs.length ? this.offset + 1 : 0;
    setText(this.pageInfo, `${from.toLocaleString()}–${(this.offset + runs.length).toLocaleString()} of ${this.total.toLocaleString()}`);
    this.prev.disabled = this.offset === 0;
    this.next.disabled = this.offset + runs.length >= this.total;
    this.runs = runs;
    this.options.onRuns?.(runs, changed, this.total);
  }

  makeRow(run) {
    const tr = this.rowTemplate.cloneNode(true);
    tr.dataset.runId = run.id;
    const row = { tr, cells: [...tr.children], run: null };
    this.updateRow(row, run);
    tr.classList.toggle("selected", this.selection.has(run.id));
    return row;
  }

  updateRow(row, run) {
    row.run = run;
    this.cols.forEach((col, i) => {
      if (col.update) col.update(row.cells[i], run);
      else if (col.text) setText(row.cells[i], col.text(run));
    });
    if (row.tr.dataset.status !== run.status) row.tr.dataset.status = run.status;
  }

  clientSort(runs) {
    if (SERVER_SORTS[this.sortKey]) return runs;
    const col = this.cols.find((c) => c.key === this.sortKey);
    if (!col?.sort) return runs;
    const sign = this.sortDir === "desc" ? -1 : 1;
    return [...runs].sort((a, b) => {
      const x = col.sort(a), y = col.sort(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sign || b.id - a.id;
    });
  }

  sortBy(key) {
    if (this.sortKey === key) this.sortDir = this.sortDir === "desc" ? "asc" : "desc";
    else { this.sortKey = key; this.sortDir = ["id", "created", "train_acc", "test_acc"].includes(key) ? "desc" : "asc"; }
    this.markSort();
    if (SERVER_SORTS[key]) { this.offset = 0; this.refresh(true); } else { this.syncUrl(); this.render({ items: this.runs || [], total: this.total }); }
  }

  markSort() {
    for (const th of this.thead.querySelectorAll("th")) {
      th.querySelector(".arrow")?.remove();
      if (th.dataset.key === this.sortKey) th.append(h("span.arrow", this.sortDir === "desc" ? "▼" : "▲"));
      th.title = th.dataset.key === this.sortKey && !SERVER_SORTS[this.sortKey] ? "Sorted within this page" : "";
    }
  }

  page(direction) {
    this.offset = Math.max(0, this.offset + direction * this.limit);
    this.refresh(true);
  }

  async action(id, action) {
    if (action === "delete") return this.deleteRun(id);
    try {
      const run = await api(`/api/runs/${id}/${action}`, { method: "POST" });
      const row = this.rows.get(id);
      if (row && run) this.updateRow(row, run);
      toast(action === "cancel" ? `Run #${id}: cancel requested` : `Run #${id} queued again`);
    } catch (err) {
      toast(`Run #${id}: ${err.message}`, "error", 6000);
    }
    this.live?.pollNow();
  }

  async deleteRun(id) {
    if (!confirm(`Delete run #${id} with its curves and distributions? This cannot be undone.`)) return;
    try {
      await api(`/api/runs/${id}`, { method: "DELETE" });
      const row = this.rows.get(id);
      if (row) { row.tr.remove(); this.rows.delete(id); }
      if (this.selection.delete(id)) this.options.onSelection?.([...this.selection]);
      toast(`Run #${id} deleted`);
    } catch (err) {
      toast(`Run #${id}: ${err.message}`, "error", 6000);
    }
    this.live?.pollNow();
  }
}

/** Filters and paging from the hash query (#/runs?status=running&config.d=750&limit=500). */
export function tableStateFromQuery(query) {
  const config = {};
  for (const [key, value] of query.entries()) {
    if (key.startsWith("config.")) (config[key.slice(7)] ||= []).push(value);
  }
  const sort = query.get("sort") || "-id";
  return {
    filters: {
      status: query.getAll("status").filter((s) => runStatuses().includes(s)),
      experiment_id: query.get("experiment_id") ? Number(query.get("experiment_id")) : null,
      role: query.get("role") || null,
      config,
      archived: ["true", "all"].includes(query.get("archived")) ? query.get("archived") : "false",
      tag: query.getAll("tag").map((t) => t.trim()).filter(Boolean),
    },
    limit: Number(query.get("limit")) || 100,
    offset: Number(query.get("offset")) || 0,
    sortKey: sort.replace(/^-/, ""),
    sortDir: sort.startsWith("-") ? "desc" : "asc",
  };
}

