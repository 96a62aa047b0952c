// Small DOM and formatting helpers shared by every page.

/** h("div.cls#id", {attrs}, ...children): create an element. Attributes starting with "on" become listeners. */
export function h(spec, attrs = {}, ...children) {
  const [tagAndId, ...classes] = spec.split(".");
  const [tag, id] = tagAndId.split("#");
  const node = document.createElement(tag || "div");
  if (id) node.id = id;
  if (classes.length) node.className = classes.join(" ");
  if (attrs === null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "class") node.className = [node.className, value].filter(Boolean).join(" ");
    else if (key === "text") node.textContent = value;
    else if (key === "html") throw new Error("no innerHTML: build nodes");
    else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** Set text only when it changed (keeps the DOM quiet while polling). */
export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

// The statuses themselves come from the API (statuses.js); a chip only shows one.
export function chip(status) {
  return h(`span.chip.st-${status}`, { text: status, title: status });
}

export function updateChip(node, status) {
  const cls = `chip st-${status}`;
  if (node.className !== cls) node.className = cls;
  setText(node, status);
}

// ---- formatting -------------------------------------------------------------------------
// Formatters are built once: toLocaleString() builds one per call, which shows in a 500-row table.
const INT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const TIME = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const DAY = new Intl.DateTimeFormat("en-CA");
let today = "";
let todayAt = 0;

export function fmtNum(value, digits = 4) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value !== "number") return String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return INT.format(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}

export function fmtPct(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return `${(100 * value).toFixed(2)}%`;
}

export function fmtInt(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return INT.format(Math.round(value));
}

export function fmtDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
  if (m < 60) return `${m}m ${String(s).padStart(2, "0")}s`;
  const hr = Math.floor(m / 60);
  return `${hr}h ${String(m % 60).padStart(2, "0")}m`;
}

export function fmtBytes(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(value < 10 && unit > 0 ? 2 : value < 100 && unit > 0 ? 1 : 0)} ${units[unit]}`;
}

/** A stored size as people read file sizes, in decimal units: 4.8 KB, 797 KB, 12 MB (model files, θ_D). */
export function fmtFileSize(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes)) return "–";
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  const [value, unit] = bytes < 1e6 ? [bytes / 1e3, "KB"] : [bytes / 1e6, "MB"];
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${unit}`;
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  if (Date.now() - todayAt > 60_000) { today = DAY.format(new Date()); todayAt = Date.now(); }
  const day = DAY.format(date);
  const time = TIME.format(date);
  return day === today ? time : `${day} ${time}`;
}

export function fmtValue(value) {
  if (value === null || value === undefined) return "null";
  if (Array.isArray(value)) return `[${value.map(fmtValue).join(", ")}]`;
  if (typeof value === "object") return JSON.stringify(value);
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
  return String(value);
}

// ---- toasts -------------------------------------------------------------------------------

export function toast(message, kind = "info", ms = 4000) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const node = h(`div.toast${kind === "error" ? ".error" : ""}`, { text: message, role: "status" });
  box.append(node);
  setTimeout(() => node.remove(), ms);
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** A poller that skips ticks while the tab is hidden and never overlaps itself. */
export function poller(fn, ms) {
  let timer = null, stopped = false, busy = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden && !busy) {
      busy = true;
      try { await fn(); } catch (err) { console.warn("poll failed", err); } finally { busy = false; }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return { stop() { stopped = true; clearTimeout(timer); }, now() { clearTimeout(timer); tick(); } };
}

export const PALETTE = ["#2457c5", "#e8590c", "#12b76a", "#c11574", "#7a5af8", "#0e9384", "#b54708", "#475467",
  "#dd2590", "#3e7bfa", "#66c61c", "#875bf7"];

export function rgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
