// The lab's HTTP API (DESIGN.md §3), as the dashboard calls it. Same origin only.

const TOKEN_KEY = "idlab.token";

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
}

export function setToken(value) {
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  } catch { /* private mode: the token lives for this page only */ }
}

export class ApiError extends Error {
  constructor(status, body, url) {
    super(ApiError.describe(status, body));
    this.status = status;
    this.body = body;
    this.url = url;
  }

  /** FastAPI's 422 list ({loc, msg}), or [] for other errors. */
  get fieldErrors() {
    return Array.isArray(this.body?.detail) ? this.body.detail : [];
  }

  static describe(status, body) {
    const detail = body?.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("\n");
    if (status === 0) return "the lab's server cannot be reached";
    return `HTTP ${status}`;
  }
}

/** Build "/api/…?a=1&a=2" from a query object (arrays repeat the parameter; null/""/undefined are left out). */
export function url(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(key, String(item));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

export async function api(path, { method = "GET", body, query, signal } = {}) {
  const headers = { Accept: "application/json" };
  const raw = body instanceof Blob;   // a file (a model file), sent as it is
  if (body !== undefined) headers["Content-Type"] = raw ? "application/octet-stream" : "application/json";
  const token = getToken();
  if (token && method !== "GET") headers.Authorization = `Bearer ${token}`;
  const target = url(path, query);
  let response;
  try {
    response = await fetch(target, { method, headers, body: body === undefined || raw ? body : JSON.stringify(body), signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, null, target);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text.slice(0, 500) }; }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data, target);
    if (response.status === 401) error.message += " — enter the lab's API token in the top bar";
    throw error;
  }
  return data;
}

let openapiPromise = null;

/** The server's OpenAPI document (fetched once). */
export function openapi() {
  if (!openapiPromise) {
    openapiPromise = api("/openapi.json").catch((err) => { openapiPromise = null; throw err; });
  }
  return openapiPromise;
}

const experimentNames = new Map();

/** An experiment's name, fetched once per id (for the runs table). */
export function experimentName(id) {
  if (!experimentNames.has(id)) {
    experimentNames.set(id, api(`/api/experiments/${id}`).then((e) => e.name).catch(() => null));
  }
  return experimentNames.get(id);
}
